/**
 * The topics of a tab, and (in the polling tab) those of the other tabs.
 *
 * The polling tab polls the union of the topics every open tab follows: a chat tab
 * and an inbox tab still make one poll, and the chat tab gets its room over the
 * channel. (The simpler "only the leader's own topics" would leave a follower tab's
 * room unpolled whenever the leader is a tab without it.) Tabs say which topics they
 * follow in their hello, when it changes, and when a new leader calls the roll; a tab
 * that closes says so (leave). One that crashes leaves its topics polled until the
 * next leader's roll call: a little wasted work, never a missed message.
 */

import { MAX_TOPICS, isTopic } from "./options.js";

const RECENT = 50; // messages kept per topic for tabs that follow it later

export class Topics {
  /** `store` keeps the cursors (a CursorStore); `keepSeen` bounds the ids remembered as announced. */
  constructor(names, store, keepSeen) {
    this.own = [];
    for (const name of names || []) {
      if (!isTopic(name)) console.warn(`notify: not a topic name, ignored: ${JSON.stringify(name)}`);
      else if (!this.own.includes(name)) this.own.push(name);
    }
    this.peers = new Map(); // tab id -> Set of topics
    this._store = store;
    this._cursors = new Map(); // topic -> cursor, or absent: the stored one, or its snapshot first
    this._recent = new Map(); // topic -> its newest messages
    this._seen = new Set(); // message ids announced in this tab
    this._keepSeen = keepSeen;
    this._warned = false;
  }

  /** Adds a topic of this tab; true if it was not followed. */
  add(name) {
    if (this.own.includes(name)) return false;
    this.own.push(name);
    return true;
  }

  /** Removes a topic of this tab; true if it was followed. Its cursor stays stored. */
  remove(name) {
    const index = this.own.indexOf(name);
    if (index < 0) return false;
    this.own.splice(index, 1);
    return true;
  }

  /** What the one poll follows: this tab's topics, then the other tabs', at most MAX_TOPICS. */
  union() {
    const union = this.own.slice();
    for (const topics of this.peers.values()) {
      for (const topic of topics) if (!union.includes(topic)) union.push(topic);
    }
    if (union.length > MAX_TOPICS) {
      if (!this._warned) console.warn(`notify: one poll follows at most ${MAX_TOPICS} topics; ignoring ${union.slice(MAX_TOPICS).join(", ")}`);
      this._warned = true;
      union.length = MAX_TOPICS;
    }
    return union;
  }

  /** Sets what another tab follows; the topics new to it that this tab keeps messages of. */
  setPeer(from, topics) {
    const previous = this.peers.get(from) || new Set();
    const wanted = new Set(Array.isArray(topics) ? topics.filter(isTopic) : []);
    if (wanted.size) this.peers.set(from, wanted);
    else this.peers.delete(from);
    return [...wanted].filter((topic) => !previous.has(topic) && this.recent(topic).length);
  }

  /** No tab follows `topic` any more (the site refused it). */
  drop(topic) {
    for (const peer of this.peers.values()) peer.delete(topic);
    return this.remove(topic);
  }

  cursor(topic) {
    return this._cursors.has(topic) ? this._cursors.get(topic) : this._store.topicCursor(topic);
  }

  /** A cursor the polling tab reached (kept, and stored), or null: the snapshot next. */
  setCursor(topic, cursor) {
    if (cursor === null) this._cursors.delete(topic);
    else this._cursors.set(topic, cursor);
    this._store.setTopicCursor(topic, cursor);
  }

  /** A cursor another tab reached: kept in memory (that tab stored it). */
  heard(topic, cursor) {
    if (typeof cursor === "string") this._cursors.set(topic, cursor);
  }

  recent(topic) {
    return this._recent.get(topic) || [];
  }

  remember(topic, messages) {
    if (messages.length) this._recent.set(topic, this.recent(topic).concat(messages).slice(-RECENT));
  }

  /** The messages of `topic` to announce in this tab: those it follows and has not announced. */
  fresh(topic, messages) {
    if (!this.own.includes(topic)) return [];
    const fresh = messages.filter((message) => !this._seen.has(message.id));
    for (const message of fresh) this._seen.add(message.id);
    const extra = this._seen.size - this._keepSeen;
    if (extra > 0) for (const id of Array.from(this._seen).slice(0, extra)) this._seen.delete(id);
    return fresh;
  }
}
