/**
 * NotifyClient: the public API, and the tabs' conversation. One tab per browser and
 * user polls (election.js, poller.js) and hands what it receives to the other tabs
 * over a BroadcastChannel (channel.js); the cursor and the ids already announced live
 * in localStorage (store.js), so a reload resumes where it stopped.
 */

import { requestPermission } from "./desktop.js";
import { browserEnv } from "./env.js";
import { Http, NotifyError } from "./http.js";
import { Inbox } from "./inbox.js";
import { DEFAULTS, PRESENCE_PREFIX, checkTopic } from "./options.js";
import { lead } from "./poller.js";
import { TimeoutAdapter } from "./retry.js";
import { Status } from "./status.js";
import { CursorStore } from "./store.js";
import { Tabs } from "./tabs.js";
import { Topics } from "./topics.js";

export class NotifyClient {
  constructor(options = {}) {
    // Read live: changing client.options (e.g. backoffMax) takes effect at the next retry.
    this.options = { ...DEFAULTS, ...options };
    this._env = browserEnv(this.options.env || {});
    this.cursor = null;
    this.leader = false;
    this.running = false;
    this._id = `${Date.now().toString(36)}-${this._env.random().toString(36).slice(2, 10)}`;
    this._store = new CursorStore(this._env.storage, this.options.user);
    this._inbox = new Inbox(this.options.keepState);
    this._topics = new Topics(this.options.topics, this._store, this.options.keepSeen);
    this._http = new Http(this.options, this._env);
    this._adapter = new TimeoutAdapter(this.options.timeout);
    this._statusMachine = new Status((status) => {
      this._emit("status", status);
      if (this.leader) this._post({ type: "status", status });
    });
    this._tabs = new Tabs(this);
    this._wake = null;
    this._leaving = false;
    this._restarting = false;
    this._held = false;
    this._polling = ""; // the topics of the poll in flight, comma-separated
    this._unlisten = [];
  }

  get _key() {
    return this._store.key;
  }

  get target() {
    return this.options.target || this._env.target();
  }

  /** "connecting", "connected", "reconnecting", "offline" or "stopped" (status.js). */
  get status() {
    return this._statusMachine.value;
  }

  get unreadCount() {
    return this._inbox.unreadCount;
  }

  /** What is known now, newest first. */
  get notifications() {
    return this._inbox.notifications;
  }

  /** The poll timeout asked for now: options.timeout, or less behind a proxy that cuts polls. */
  get requestedTimeout() {
    return this._adapter.timeout;
  }

  /** The topics this tab follows (the poll may follow more: those of the other tabs). */
  get topics() {
    return this._topics.own.slice();
  }

  /* ---- public API ---- */

  start() {
    if (this.running) return this;
    this.running = true;
    this._leaving = false;
    this._stop = new AbortController();
    this._status("start");
    const env = this._env;
    this._unlisten = [
      env.listen("online", () => this._wakeUp()),
      env.listen("offline", () => this._http.abort("offline")),
      env.listen("pagehide", () => this._tabs.hide()),
      env.listen("pageshow", (event) => event && event.persisted && this._tabs.show()),
    ];
    this._tabs.open(this._stop.signal);
    return this;
  }

  stop() {
    if (!this.running) return this;
    this.running = false;
    this._stop.abort();
    this._wakeUp();
    this._http.abort("stopped");
    for (const unlisten of this._unlisten) unlisten();
    this._tabs.close();
    this.leader = false;
    this._status("stop");
    return this;
  }

  /** Mark notifications read; resolves to the new unread count. */
  async markRead(ids) {
    const list = Array.from(ids || [], Number).filter((id) => Number.isInteger(id) && id > 0);
    if (!list.length) return this.unreadCount;
    let count = this.unreadCount;
    for (let i = 0; i < list.length; i += 1000) {
      count = await this._read({ ids: list.slice(i, i + 1000) }); // the server takes 1000 at once
    }
    return count;
  }

  /** Mark every notification of the user read; resolves to the new unread count (0). */
  markAllRead() {
    return this._read({ all: true });
  }

  /** Ask for desktop notifications (call it from a click); resolves to the permission. */
  async enableDesktop() {
    const permission = await requestPermission(this._env);
    if (permission === "granted") this.options.desktop = true;
    return permission;
  }

  /** Follow a topic too: its messages come as notify:topic events, in the same one poll. */
  follow(topic) {
    if (this._topics.add(checkTopic(topic))) this._tabs.topicsChanged();
    return this;
  }

  /** Stop following a topic (its cursor stays stored: following it again resumes). */
  unfollow(topic) {
    if (this._topics.remove(topic)) this._tabs.topicsChanged();
    return this;
  }

  /**
   * Post `data` (an object) to a topic: POST publishUrl with {"data": data}.
   * Resolves to the server's answer, {message, cursor}. The message also comes back
   * through the poll (a notify:topic event) to every tab following the topic, this
   * one included. Rejects with a NotifyError (403 also dispatches notify:forbidden).
   */
  async publish(topic, data) {
    checkTopic(topic);
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      throw new TypeError('notify: publish() takes a topic and an object, e.g. {text: "hello"}');
    }
    const url = this.options.publishUrl.replace("{topic}", encodeURIComponent(topic));
    const { status, ok, body } = await this._http.post(url, { data });
    if (status === 401) this._unauthorized(body, false);
    if (status === 403 && body.error === "forbidden") {
      this._emit("forbidden", { topic, action: "post", error: body.error, detail: body.detail });
    }
    if (!ok) throw new NotifyError(status, body.error, body.detail);
    return body;
  }

  /**
   * Who follows `topic` now: GET presenceUrl. Resolves to {topic, count, users, events}
   * (`users`: [{id, username}], at most the server's MAX_PRESENCE; `count`: all of them).
   * Rejects with a NotifyError (403 also dispatches notify:forbidden; 404 presence_off).
   */
  async presence(topic) {
    checkTopic(topic);
    const url = this.options.presenceUrl.replace("{topic}", encodeURIComponent(topic));
    const { status, ok, body } = await this._http.get(url);
    if (status === 401) this._unauthorized(body, false);
    if (status === 403 && body.error === "forbidden") {
      this._emit("forbidden", { topic, action: "read", error: body.error, detail: body.detail });
    }
    if (!ok) throw new NotifyError(status, body.error, body.detail);
    return body;
  }

  /** Follow `topic`'s join and leave events too: notify:presence events (the topic "presence:<topic>"). */
  followPresence(topic) {
    return this.follow(PRESENCE_PREFIX + checkTopic(topic));
  }

  unfollowPresence(topic) {
    return this.unfollow(PRESENCE_PREFIX + topic);
  }

  /* ---- events and status ---- */

  _emit(type, detail) {
    this.target.dispatchEvent(new CustomEvent(`notify:${type}`, { detail }));
  }

  _status(event, shared) {
    return this._statusMachine.apply(event, shared);
  }

  _setUnread(count) {
    if (this._inbox.setUnread(count)) this._emit("unread", count);
  }

  _applySync(notifications, unreadCount) {
    this._inbox.remember(notifications);
    this._inbox.synced = true;
    this._emit("sync", { notifications: this.notifications, unread_count: unreadCount });
    this._setUnread(unreadCount);
  }

  _applyBatch(fresh, unreadCount) {
    this._inbox.remember(fresh);
    for (const n of fresh) {
      this._inbox.seen.add(n.id);
      this._emit("message", n);
    }
    this._setUnread(unreadCount);
  }

  _applyRead(ids, unreadCount) {
    this._inbox.markRead(ids);
    this._emit("read", { ids, unread_count: unreadCount });
    this._setUnread(unreadCount);
  }

  _unauthorized(body, fromLeader) {
    if (!this.running) return;
    if (!fromLeader) this._post({ type: "unauthorized", body });
    this.stop();
    this._emit("unauthorized", body);
  }

  _announceTopic(topic, messages, snapshot) {
    for (const message of this._topics.fresh(topic, messages)) {
      if (topic.startsWith(PRESENCE_PREFIX)) this._emit("presence", presenceEvent(topic, message, snapshot));
      else this._emit("topic", { topic, message, snapshot: Boolean(snapshot) });
    }
  }

  /** The site refused `topic`: no tab follows it any more (`tell`: say so to the other tabs). */
  _refuseTopic(topic, body, tell) {
    if (this._topics.drop(topic)) {
      this._emit("forbidden", { topic, action: "read", error: body && body.error, detail: body && body.detail });
    }
    if (tell) this._post({ type: "forbidden", topic, body });
  }

  /** Retention passed the cursor of `topic`: on from `oldest`, and a notify:gap. */
  _topicGap(topic, oldest, tell) {
    if (tell) this._topics.setCursor(topic, oldest);
    else this._topics.heard(topic, oldest);
    if (this._topics.own.includes(topic)) this._emit("gap", { topic, oldest_cursor: oldest });
    if (tell) this._post({ type: "gap", topic, oldest_cursor: oldest });
  }

  /* ---- leading (poller.js) ---- */

  /** Poll for every tab until this one stops or steps down; resolves then. */
  lead() {
    return lead(this);
  }

  /** Another tab polls too (an election over the channel crossed): stop polling. */
  stepDown() {
    this.leader = false;
    this._wakeUp();
    this._http.abort("stepped-down");
  }

  _post(message) {
    this._tabs.post(message);
  }

  async _read(payload) {
    const { status, ok, body } = await this._http.post(this.options.readUrl, payload, { keepalive: true }); // survives following a link
    if (status === 401) this._unauthorized(body, false);
    if (!ok) throw new NotifyError(status, body.error, body.detail);
    const ids = payload.all ? null : payload.ids;
    this._applyRead(ids, body.unread_count);
    this._post({ type: "read", ids, unread_count: body.unread_count });
    return body.unread_count;
  }

  _saveSeen() {
    this._inbox.seen = this._store.saveSeen(this._inbox.seen, this.options.keepSeen);
  }

  // Resolves after `ms` (or when woken, if null), or at once on stop.
  _sleep(ms) {
    return new Promise((resolve) => {
      const env = this._env;
      const timer = ms === null ? null : env.setTimeout(done, ms);
      const self = this;
      function done() {
        if (timer !== null) env.clearTimeout(timer);
        if (self._wake === done) self._wake = null;
        resolve();
      }
      this._wake = done;
    });
  }

  _wakeUp() {
    if (this._wake) this._wake();
  }
}

/** A message of "presence:<topic>" as a notify:presence event's detail. */
function presenceEvent(stream, message, snapshot) {
  const data = message.data || {};
  return {
    topic: stream.slice(PRESENCE_PREFIX.length),
    event: data.event,
    user: message.sender || { id: data.user_id, username: null },
    at: data.at,
    snapshot: Boolean(snapshot),
  };
}
