/** The poll loop, run by the polling tab only: what to ask for, and what to do with the answer. */

import { showDesktop } from "./desktop.js";
import { MAX_ATTEMPT, retryDelay } from "./retry.js";

/**
 * The query of the next poll. Without topics, the inbox-only poll; with topics, one
 * multi-stream poll. A stream without a cursor gets its snapshot, answered at once;
 * so is a poll with `timeout` 0 (a check).
 */
export function pollParams({ cursor, topics, topicCursor, timeout }) {
  const snapshot = cursor === null;
  const multi = topics.length > 0;
  const fresh = topics.filter((topic) => topicCursor(topic) === null);
  const asked = snapshot || fresh.length ? 0 : timeout;
  let params;
  if (!multi) {
    params = snapshot ? {} : { after: cursor, timeout: asked };
  } else {
    const after = topics.filter((topic) => !fresh.includes(topic)).map((topic) => `${topic}:${topicCursor(topic)}`);
    if (!snapshot) after.unshift(`inbox:${cursor}`);
    params = { streams: ["inbox", ...topics].join(",") };
    if (after.length) params.after = after.join(",");
    if (!snapshot && !fresh.length) params.timeout = asked;
  }
  return { params, asked, snapshot, fresh, multi };
}

/** Poll for every tab until `client` stops or steps down (its Web Lock is held meanwhile). */
export async function lead(client) {
  if (!client.running) return;
  client.leader = true;
  client._tabs.gone.clear();
  client._inbox.seen = client._store.loadSeen(client._inbox.seen);
  // The other tabs say which topics they follow; answers that add one restart the poll.
  client._topics.peers = new Map();
  client._post({ type: "rollcall" });
  if (client.cursor === null) client.cursor = client._store.cursor;
  if (client._inbox.synced) {
    // Taking over from a tab that closed or reloaded: not an outage. Say what is known
    // (to a tab that opened while no tab polled, too), and check the server at once.
    client._status("handover");
    client._tabs.postState();
  }
  try {
    await new PollLoop(client).run();
  } finally {
    client.leader = false;
  }
}

export class PollLoop {
  /** `client` is the NotifyClient that leads; the loop ends when it stops or steps down. */
  constructor(client) {
    this.client = client;
    const takeover = client._inbox.synced; // it followed another tab, which had the list
    // A tab that followed another already has the list; a new one asks for it first.
    this.resumeFrom = takeover ? null : client.cursor;
    if (!takeover) client.cursor = null;
    this.attempt = 0;
    // The first poll of a tab that takes over, and the first after a failure, asks for
    // timeout=0: its answer says at once that the server is there, where a held poll
    // would say so only when it ends (up to 25 s later).
    this.check = takeover;
    this.refused = false; // a cursor was refused as invalid since the last held poll
    this.expired = new Set(); // "<topic>:<oldest_cursor>" of 410 answers since the last held poll
  }

  async run() {
    const client = this.client;
    const env = client._env;
    while (client.running && client.leader) {
      if (client._leaving) {
        // This page is being hidden or unloaded (a reload): its aborted poll is no outage.
        await client._sleep(null); // until pageshow, if it comes back from the cache
        this.check = true;
        continue;
      }
      if (!env.online()) {
        client._status("offline");
        await client._sleep(null); // until the online event
        if (env.online()) client._status("online");
        this.check = true;
        continue;
      }
      // Topics followed by this tab or another: with none, the inbox-only poll.
      const topics = client._topics.union();
      const poll = pollParams({
        cursor: client.cursor,
        topics,
        topicCursor: (topic) => client._topics.cursor(topic),
        timeout: this.check ? 0 : client._adapter.timeout,
      });
      client._restarting = false;
      client._held = poll.asked > 0;
      client._polling = topics.join(",");
      const started = env.now();
      let reply = await client._http.poll(poll.params, poll.asked);
      const elapsed = env.now() - started;
      if (reply.status === 0 && (!client.running || !client.leader)) break;
      if (poll.multi && reply.status === 200 && !(reply.body && reply.body.streams && reply.body.streams.inbox)) {
        reply = { status: 0, error: new Error("not a multi-stream answer") };
      }
      if (client._restarting && reply.status !== 200) continue; // aborted to follow other topics
      if (reply.status === 200 && reply.body) {
        this.answered(reply.body, poll, topics);
        continue;
      }
      if (client._leaving) continue;
      if (reply.status === 401) {
        client._unauthorized(reply.body || { error: "not_authenticated" }, false);
        break;
      }
      if (this.refusal(reply, poll, topics)) continue;
      if (!client.running || !client.leader) break;
      await this.failed(reply, poll, elapsed);
    }
  }

  answered(body, poll, topics) {
    const client = this.client;
    client._status("answered");
    this.check = false;
    const inbox = poll.multi ? body.streams.inbox : body;
    if (poll.snapshot) this.snapshot(inbox);
    else this.batch(inbox);
    for (const topic of poll.multi ? topics : []) {
      const page = body.streams[topic];
      if (page) this.topicPage(topic, page, poll.fresh.includes(topic));
    }
    if (poll.asked > 0) {
      // Only a held poll that lasted proves that long polls get through.
      this.attempt = 0;
      this.refused = false;
      this.expired.clear();
      client._adapter.answered(poll.asked, client.options.timeout);
    }
  }

  snapshot(page) {
    const client = this.client;
    if (this.resumeFrom) {
      // Reloaded: the list is now, but what arrived since the stored cursor may not
      // all be unread any more. Poll from there; the seen ids keep out repeats.
      client.cursor = this.resumeFrom;
      this.resumeFrom = null;
    } else {
      client.cursor = page.cursor;
      // A first visit: what is unread is listed, not announced as new.
      client._inbox.markSeen(page.notifications);
      client._saveSeen();
      client._store.cursor = client.cursor;
    }
    client._applySync(page.notifications, page.unread_count);
    client._post({ type: "sync", notifications: client.notifications, unread_count: page.unread_count, cursor: client.cursor });
  }

  batch(page) {
    const client = this.client;
    client._inbox.seen = client._store.loadSeen(client._inbox.seen); // another leader before us may have announced some
    const fresh = client._inbox.fresh(page.notifications);
    client.cursor = page.cursor;
    client._applyBatch(fresh, page.unread_count);
    client._saveSeen();
    client._store.cursor = client.cursor;
    client._post({ type: "batch", notifications: fresh, unread_count: page.unread_count, cursor: client.cursor });
    if (client.options.desktop) showDesktop(client._env, fresh);
  }

  topicPage(topic, page, snapshot) {
    const client = this.client;
    const messages = Array.isArray(page.messages) ? page.messages : [];
    const cursor = String(page.cursor);
    client._topics.setCursor(topic, cursor);
    client._topics.remember(topic, messages);
    client._announceTopic(topic, messages, snapshot);
    if (messages.length || snapshot) client._post({ type: "topic-batch", topic, messages, cursor, snapshot });
  }

  /** A refusal that one change answers (a topic dropped or moved on, a cursor forgotten): true to poll again at once. */
  refusal(reply, poll, topics) {
    const client = this.client;
    const body = reply.body;
    // A multi-stream poll fails whole when one stream refuses; the body names it.
    const stream = poll.multi && body && body.stream !== "inbox" && topics.includes(body.stream) ? body.stream : null;
    if (stream && reply.status === 403 && body.error === "forbidden") {
      client._refuseTopic(stream, body, true);
      return true; // at once, without it
    }
    const oldest = body && body.oldest_cursor != null ? String(body.oldest_cursor) : null;
    if (stream && reply.status === 410 && oldest && !this.expired.has(`${stream}:${oldest}`)) {
      // Retention passed our cursor: go on from the oldest message still kept, and say so.
      this.expired.add(`${stream}:${oldest}`); // the same answer twice waits like an error
      client._topicGap(stream, oldest, true);
      return true;
    }
    if (reply.status === 400 && body && body.error === "invalid_cursor") {
      // The stored cursor is not ours to use (another user, a reset database): start
      // afresh, at once the first time; a fresh cursor refused too waits like an error.
      if (stream) {
        client._topics.setCursor(stream, null);
      } else {
        client._store.cursor = null;
        client.cursor = null;
        this.resumeFrom = null;
        // Without a stream named, the compound cursor as a whole was refused.
        if (poll.multi && !body.stream) for (const topic of topics) client._topics.setCursor(topic, null);
      }
      if (!this.refused) {
        this.refused = true;
        return true;
      }
    }
    return false;
  }

  async failed(reply, poll, elapsed) {
    const client = this.client;
    const env = client._env;
    this.check = true;
    if (!env.online()) return; // the offline branch waits
    const lowered = client._adapter.failed(reply.status, elapsed, poll.asked, client.options.minTimeout);
    if (lowered !== null) console.info(`notify: polls are cut after ~${Math.round(elapsed / 100) / 10} s; asking for ${lowered} s`);
    client._status("failed");
    const retryAfter = reply.headers ? reply.headers.get("Retry-After") : null;
    const delay = retryDelay(this.attempt, client.options, retryAfter, env.random, Date.now());
    this.attempt = Math.min(this.attempt + 1, MAX_ATTEMPT);
    await client._sleep(delay);
  }
}
