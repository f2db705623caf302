/** Topics in the one poll: follow, unfollow, the other tabs' topics, refusals, gaps, cursors. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { checkTopic } from "../../notify/static/notify/lib/index.js";
import { Topics } from "../../notify/static/notify/lib/topics.js";
import { CursorStore } from "../../notify/static/notify/lib/store.js";
import { FakeStorage, note, page, settle, World } from "./fakes.js";

function message(id, topic = "room:1") {
  return { id, topic, data: { text: `m${id}` }, sender: null, created_at: "2026-11-30T12:00:00Z" };
}

function topicPage(cursor, messages = []) {
  return { messages, cursor: String(cursor) };
}

function multi(inbox, streams) {
  return { streams: { inbox, ...streams } };
}

/** A tab following `topics`, past its snapshot; returns it holding its first poll. */
async function following(world, topics, options = {}) {
  const tab = world.tab({ topics, ...options });
  await settle();
  world.server.poll().respond(200, multi(page(10), Object.fromEntries(topics.map((t) => [t, topicPage(5, [message(5, t)])]))));
  await settle();
  return tab;
}

test("topics join the inbox in one poll: their snapshot first, then held from each cursor", async () => {
  const world = new World();
  const tab = world.tab({ topics: ["room:1", "bad name", "room:1"] });
  await settle();
  assert.deepEqual(tab.client.topics, ["room:1"], "a bad name is ignored, a repeat too");
  assert.deepEqual(world.server.poll().query, { streams: "inbox,room:1" });
  world.server.poll().respond(200, multi(page(10), { "room:1": topicPage(5, [message(5)]) }));
  await settle();
  assert.deepEqual(tab.of("topic"), [{ topic: "room:1", message: message(5), snapshot: true }]);
  assert.deepEqual(world.server.poll().query, { streams: "inbox,room:1", after: "inbox:10,room:1:5", timeout: "25" });
  assert.equal(world.storage.getItem("notify:7:topic:room:1"), "5");

  world.server.poll().respond(200, multi(page(10), { "room:1": topicPage(6, [message(6)]) }));
  await settle();
  assert.deepEqual(tab.of("topic").at(-1), { topic: "room:1", message: message(6), snapshot: false });
});

test("follow() aborts the held poll and polls with the topic at once; unfollow() goes back", async () => {
  const world = new World();
  const tab = world.tab();
  await settle();
  world.server.poll().respond(200, page(10));
  await settle();
  const held = world.server.poll();
  assert.equal(tab.client._polling, "");

  tab.client.follow("room:1");
  tab.client.follow("room:1"); // once
  await settle();
  assert.ok(held.aborted);
  assert.deepEqual(world.server.poll().query, { streams: "inbox,room:1", after: "inbox:10" });
  assert.equal(tab.client.status, "connected", "a restart is no outage");
  world.server.poll().respond(200, multi(page(10), { "room:1": topicPage(5) }));
  await settle();
  assert.equal(tab.client._polling, "room:1");

  tab.client.unfollow("room:1");
  tab.client.unfollow("room:9"); // not followed: nothing
  await settle();
  assert.deepEqual(world.server.poll().query, { after: "10", timeout: "25" });
  assert.deepEqual(tab.client.topics, []);
  assert.equal(world.storage.getItem("notify:7:topic:room:1"), "5", "the cursor stays: following again resumes");
  tab.client.follow("room:1");
  await settle();
  assert.equal(world.server.poll().query.after, "inbox:10,room:1:5");
  assert.throws(() => tab.client.follow("inbox"), TypeError);
});

test("a follower tab's topics are polled by the polling tab, and its messages reach only that tab", async () => {
  const world = new World();
  const inbox = world.tab();
  await settle();
  world.server.poll().respond(200, page(10));
  await settle();
  const chat = world.tab({ topics: ["room:1"] });
  await settle();
  assert.ok(inbox.client.leader && !chat.client.leader);
  assert.equal(world.server.poll().query.streams, "inbox,room:1", "the leader polls the chat tab's room");
  world.server.poll().respond(200, multi(page(10), { "room:1": topicPage(5, [message(5)]) }));
  await settle();
  assert.deepEqual(chat.of("topic").map((d) => d.message.id), [5]);
  assert.deepEqual(inbox.of("topic"), [], "the inbox tab does not follow the room");

  chat.client.unfollow("room:1"); // a follower says so
  await settle();
  assert.deepEqual(world.server.poll().query, { after: "10", timeout: "25" });
  chat.client.follow("room:1");
  await settle();
  assert.equal(world.server.poll().query.streams, "inbox,room:1");
  await chat.close(); // leave
  assert.deepEqual(world.server.poll().query, { after: "10", timeout: "25" });
});

test("a tab that follows a topic already polled gets its recent messages from the polling tab", async () => {
  const world = new World();
  const first = await following(world, ["room:1"]);
  const second = world.tab({ topics: ["room:1"] });
  await settle();
  assert.ok(first.client.leader);
  assert.deepEqual(second.of("topic"), [{ topic: "room:1", message: message(5), snapshot: true }]);
  // And the polling tab's own follow() of a topic it polls for another tab announces what it has.
  const third = world.tab({ topics: ["room:2"] });
  await settle();
  world.server.poll().respond(200, multi(page(10), { "room:1": topicPage(5), "room:2": topicPage(8, [message(8, "room:2")]) }));
  await settle();
  first.client.follow("room:2");
  await settle();
  assert.deepEqual(first.of("topic").at(-1), { topic: "room:2", message: message(8, "room:2"), snapshot: true });
  assert.equal(third.of("topic").length, 1);
});

test("a topic the site refuses (403) is dropped in every tab, and the poll goes on without it at once", async () => {
  const world = new World();
  const tab = await following(world, ["room:1"]);
  const other = world.tab({ topics: ["room:staff"] });
  await settle();
  world.server.poll().respond(403, { error: "forbidden", detail: "staff only", stream: "room:staff" });
  await settle();
  assert.deepEqual(other.of("forbidden"), [{ topic: "room:staff", action: "read", error: "forbidden", detail: "staff only" }]);
  assert.deepEqual(tab.of("forbidden"), [], "not its topic");
  assert.deepEqual(other.client.topics, []);
  assert.equal(world.server.poll().query.streams, "inbox,room:1");
  assert.equal(tab.client.status, "connected");
});

test("retention passed a topic's cursor (410): on from the oldest kept, and notify:gap in the tabs that follow it", async () => {
  const world = new World();
  const tab = await following(world, ["room:1"]);
  const other = world.tab({ topics: ["room:1"] });
  await settle();
  world.server.poll().respond(410, { error: "cursor_expired", stream: "room:1", oldest_cursor: 40 });
  await settle();
  assert.deepEqual(tab.of("gap"), [{ topic: "room:1", oldest_cursor: "40" }]);
  assert.deepEqual(other.of("gap"), [{ topic: "room:1", oldest_cursor: "40" }]);
  assert.equal(world.storage.getItem("notify:7:topic:room:1"), "40");
  const again = world.server.poll();
  assert.equal(again.query.after, "inbox:10,room:1:40");
  again.respond(410, { error: "cursor_expired", stream: "room:1", oldest_cursor: 40 }); // the same again: waits like an error
  await settle();
  assert.equal(world.server.pending().length, 0);
  assert.equal(tab.client.status, "reconnecting");
});

test("a refused topic cursor restarts that topic from its snapshot; a refused compound cursor, everything", async () => {
  const world = new World();
  await following(world, ["room:1", "room:2"]);
  world.server.poll().respond(400, { error: "invalid_cursor", stream: "room:2" });
  await settle();
  assert.equal(world.server.poll().query.after, "inbox:10,room:1:5", "room:2 without a cursor: its snapshot");
  world.server.poll().respond(400, { error: "invalid_cursor" }); // refused again before a held poll: waits
  await settle();
  assert.equal(world.server.pending().length, 0);
  while (!world.server.pending().length) await world.clock.advance(100);
  assert.deepEqual(world.server.poll().query, { streams: "inbox,room:1,room:2" }, "no cursor at all");
  assert.equal(world.storage.getItem("notify:7:cursor"), null);
});

test("a multi-stream poll answered without the inbox is a failure, not a crash", async () => {
  const world = new World();
  const tab = await following(world, ["room:1"]);
  world.server.poll().respond(200, { notifications: [], cursor: "10", unread_count: 0 });
  await settle();
  assert.equal(tab.client.status, "reconnecting");
});

test("at most 9 topics in the one poll; the rest are ignored with a warning", () => {
  const topics = new Topics(
    Array.from({ length: 11 }, (_, i) => `room:${i}`),
    new CursorStore(() => new FakeStorage(), "1"),
    500,
  );
  assert.equal(topics.union().length, 9);
  assert.equal(topics.union().length, 9, "warned once");
});

test("topic ids announced are bounded by keepSeen", async () => {
  const world = new World();
  const tab = await following(world, ["room:1"], { keepSeen: 3 });
  world.server.poll().respond(200, multi(page(10), { "room:1": topicPage(9, [6, 7, 8, 9].map((id) => message(id))) }));
  await settle();
  assert.equal(tab.client._topics._seen.size, 3);
});

test("checkTopic: names of the server's rules only", () => {
  assert.equal(checkTopic("room:42"), "room:42");
  for (const bad of ["inbox", "", "a b", "x".repeat(101), 42, null]) assert.throws(() => checkTopic(bad), TypeError);
});

test("a follower hears the leader's note of a message it follows, once, with the leader's cursor", async () => {
  const world = new World();
  await following(world, ["room:1"]);
  const other = world.tab({ topics: ["room:1"] });
  await settle();
  world.server.poll().respond(200, multi(page(11, [note(11)]), { "room:1": topicPage(6, [message(6)]) }));
  await settle();
  assert.deepEqual(other.of("topic").map((d) => d.message.id), [5, 6]);
  assert.equal(other.client._topics.cursor("room:1"), "6");
  assert.deepEqual(other.of("message").map((n) => n.id), [11]);
});
