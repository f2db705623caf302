/**
 * The tabs of one browser and user talk over a BroadcastChannel: the polling tab
 * hands what it receives to the others (sync, batch, status, topic-batch, gap,
 * forbidden, unauthorized), every tab says which topics it follows (hello, topics,
 * leave) and shares its read marks; heartbeat, claim and bye are the election's.
 */

import { Channel } from "./channel.js";
import { Election } from "./election.js";

export class Tabs {
  constructor(client) {
    this.client = client;
    this.channel = null;
    this.election = null;
    this.gone = new Set(); // tabs that said bye: what they say after it is not news
  }

  open(signal) {
    const client = this.client;
    this.channel = new Channel(client._env, `${client._key}:channel`, client._id, (message) => this.receive(message));
    this.election = new Election(client, client._env, this.channel, `${client._key}:poller`);
    this.post({ type: "hello", topics: client.topics });
    this.election.start(signal);
  }

  close() {
    this.election.stop();
    this.post({ type: this.client.leader ? "bye" : "leave" });
    this.channel.close();
    this.channel = null;
  }

  post(message) {
    if (this.channel) this.channel.post(message);
  }

  /** What the polling tab knows, for a tab that opened (or when this one takes over). */
  postState() {
    const client = this.client;
    if (!client._inbox.synced) return;
    this.post({ type: "sync", notifications: client.notifications, unread_count: client.unreadCount, cursor: client.cursor });
    this.post({ type: "status", status: client.status });
  }

  receive(message) {
    const client = this.client;
    const leader = client.leader;
    switch (message.type) {
      case "hello": // a new tab wants the state
        if (leader) {
          this.setPeerTopics(message.from, message.topics);
          this.postState();
        }
        break;
      case "sync":
        if (!leader) {
          if (message.cursor) client.cursor = message.cursor;
          client._applySync(message.notifications, message.unread_count);
        }
        break;
      case "batch":
        if (!leader) {
          if (message.cursor) client.cursor = message.cursor;
          client._applyBatch(client._inbox.fresh(message.notifications), message.unread_count);
        }
        break;
      case "status":
        if (!leader && !this.gone.has(message.from)) client._status("shared", message.status);
        break;
      case "read":
        client._applyRead(message.ids, message.unread_count);
        break;
      case "unauthorized":
        client._unauthorized(message.body, true);
        break;
      case "rollcall": // a new leader asks which topics the tabs follow
        if (!leader) this.post({ type: "topics", topics: client.topics });
        break;
      case "topics":
        if (leader) this.setPeerTopics(message.from, message.topics);
        break;
      case "leave":
        if (leader) this.setPeerTopics(message.from, []);
        break;
      case "topic-batch":
        if (!leader) {
          client._topics.heard(message.topic, message.cursor);
          client._announceTopic(message.topic, message.messages, message.snapshot);
        }
        break;
      case "gap":
        if (!leader && typeof message.oldest_cursor === "string") client._topicGap(message.topic, message.oldest_cursor, false);
        break;
      case "forbidden":
        if (!leader) client._refuseTopic(message.topic, message.body, false);
        break;
      case "bye":
        this.gone.add(message.from);
        this.election.receive(message);
        break;
      case "heartbeat":
      case "claim":
        this.election.receive(message);
        break;
      default:
    }
  }

  // pagehide: the tab closes, reloads or goes into the back/forward cache. What its
  // poll does from here (the browser aborts it) is not news for the other tabs.
  hide() {
    this.client._leaving = true;
    this.post({ type: this.client.leader ? "bye" : "leave" });
  }

  // pageshow of a page back from the back/forward cache: on as before.
  show() {
    this.client._leaving = false;
    this.post({ type: "hello", topics: this.client.topics });
    this.client._wakeUp();
  }

  setPeerTopics(from, topics) {
    const client = this.client;
    if (!from || from === client._id) return;
    // A tab that joins a topic already polled gets what this tab keeps of it.
    for (const topic of client._topics.setPeer(from, topics)) {
      const messages = client._topics.recent(topic);
      this.post({ type: "topic-batch", topic, messages, cursor: client._topics.cursor(topic), snapshot: true });
    }
    this.restart();
  }

  /** This tab follows other topics now: the polling tab polls them (at once), or is told. */
  topicsChanged() {
    const client = this.client;
    if (!client.running) return;
    if (client.leader) {
      for (const topic of client._topics.own) {
        const recent = client._topics.recent(topic);
        if (recent.length) client._announceTopic(topic, recent, true); // polled already for another tab
      }
      this.restart();
    } else {
      this.post({ type: "topics", topics: client.topics });
    }
  }

  // Poll again at once with the streams now wanted: a held poll is aborted (a poll
  // answered at once, or a backoff, picks them up when it ends).
  restart() {
    const client = this.client;
    if (!client.leader || !client._held || !client._http.current) return;
    if (client._topics.union().join(",") === client._polling) return;
    client._restarting = true;
    client._http.abort("restart");
  }
}
