/** One tab's poll loop against a fake server and clock: what it asks for, and what it makes of the answers. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { pollParams } from "../../notify/static/notify/lib/poller.js";
import { note, page, settle, World } from "./fakes.js";

/** A started tab past its first answer (the snapshot), holding its first poll. */
async function connected(world, options = {}, unread = []) {
  const tab = world.tab(options);
  await settle();
  world.server.poll().respond(200, page(10, unread));
  await settle();
  return tab;
}

test("a first visit lists what is unread, then holds a poll from the cursor", async () => {
  const world = new World();
  const tab = world.tab();
  await settle();
  assert.deepEqual(tab.statuses, ["connecting"]);
  const snapshot = world.server.poll();
  assert.deepEqual(snapshot.query, {});
  snapshot.respond(200, page(10, [note(9), note(10)]));
  await settle();

  assert.deepEqual(tab.statuses, ["connecting", "connected"]);
  assert.deepEqual(tab.of("message"), [], "listed, not announced");
  assert.deepEqual(tab.of("unread"), [2]);
  assert.deepEqual(tab.client.notifications.map((n) => n.id), [10, 9]);
  assert.equal(world.storage.getItem("notify:7:cursor"), "10");
  assert.deepEqual(world.server.poll().query, { after: "10", timeout: "25" });
});

test("a notification answers the held poll: announced once, cursor stored, polled again at once", async () => {
  const world = new World();
  const tab = await connected(world);
  world.server.poll().respond(200, page(11, [note(11)]));
  await settle();
  world.server.poll().respond(200, page(11, [note(11)])); // again (a cursor that did not move): not announced twice
  await settle();

  assert.deepEqual(tab.of("message").map((n) => n.id), [11]);
  assert.equal(world.storage.getItem("notify:7:cursor"), "11");
  assert.deepEqual(JSON.parse(world.storage.getItem("notify:7:seen")), [11]);
  assert.deepEqual(world.server.poll().query, { after: "11", timeout: "25" });
});

test("a reload resumes from the stored cursor: the snapshot first, then what arrived since", async () => {
  const world = new World();
  world.storage.setItem("notify:7:cursor", "10");
  world.storage.setItem("notify:7:seen", "[10]");
  const tab = world.tab();
  await settle();
  world.server.poll().respond(200, page(12, [note(10), note(11), note(12)]));
  await settle();
  assert.deepEqual(world.server.poll().query, { after: "10", timeout: "25" }, "from where it stopped");
  world.server.poll().respond(200, page(12, [note(11), note(12)]));
  await settle();

  assert.deepEqual(tab.of("message").map((n) => n.id), [11, 12]);
  assert.equal(tab.client.cursor, "12");
});

test("an unusable stored cursor is dropped and the client starts afresh at once", async () => {
  const world = new World();
  world.storage.setItem("notify:7:cursor", "not-a-cursor");
  const tab = world.tab();
  await settle();
  world.server.poll().respond(200, page(3));
  await settle();
  world.server.poll().respond(400, { error: "invalid_cursor", detail: "bad" });
  await settle();
  assert.equal(world.storage.getItem("notify:7:cursor"), null);
  assert.deepEqual(world.server.poll().query, {}, "a fresh snapshot, without waiting");
  world.server.poll().respond(200, page(3));
  await settle();
  assert.equal(world.storage.getItem("notify:7:cursor"), "3");
  assert.equal(tab.client.status, "connected");
});

test("a failed poll: reconnecting, a jittered wait, then a check (timeout=0) that says connected at once", async () => {
  const world = new World();
  world.random = () => 0.5;
  const tab = await connected(world);
  world.server.poll().fail();
  await settle();
  assert.equal(tab.client.status, "reconnecting");
  await world.clock.advance(499);
  assert.equal(world.server.pending().length, 0, "waits backoffBase * random");
  await world.clock.advance(1);
  const check = world.server.poll();
  assert.equal(check.query.timeout, "0");
  check.respond(200, page(10));
  await settle();
  assert.equal(tab.client.status, "connected");
  assert.equal(world.server.poll().query.timeout, "25", "then held again");
  assert.deepEqual(tab.statuses, ["connecting", "connected", "reconnecting", "connected"]);
});

test("the wait doubles with each failure (full jitter), and starts again after a held poll", async () => {
  const world = new World();
  world.random = () => 0.999;
  await connected(world);
  const waits = [];
  for (let i = 0; i < 4; i += 1) {
    world.server.poll().respond(503, { error: "unavailable" });
    await settle();
    const before = world.clock.now();
    while (!world.server.pending().length) await world.clock.advance(10);
    waits.push(world.clock.now() - before);
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 8000]);
});

test("Retry-After is honoured even when the backoff is shorter", async () => {
  const world = new World();
  world.random = () => 0;
  await connected(world);
  world.server.poll().respond(503, { error: "unavailable" }, { "Retry-After": "2" });
  await settle();
  await world.clock.advance(1999);
  assert.equal(world.server.pending().length, 0);
  await world.clock.advance(1);
  assert.equal(world.server.poll().query.timeout, "0");
});

test("polls cut early by a proxy twice lower the timeout asked for", async () => {
  const world = new World();
  const tab = await connected(world);
  for (const cut of [(r) => r.respond(504, "<html>Gateway Timeout</html>"), (r) => r.fail()]) {
    await world.clock.advance(2000);
    cut(world.server.poll());
    await settle();
    while (!world.server.pending().length) await world.clock.advance(100);
    world.server.poll().respond(200, page(10)); // the check after the failure
    await settle();
  }
  assert.equal(tab.client.requestedTimeout, 1.6);
  assert.equal(world.server.poll().query.timeout, "1.6");
});

test("a poll that outlives its timeout by 15 s is given up (a half-open connection)", async () => {
  const world = new World();
  const tab = await connected(world);
  const held = world.server.poll();
  await world.clock.advance(25000 + 15000);
  assert.ok(held.aborted);
  assert.equal(tab.client.status, "reconnecting");
});

test("offline: waits for the online event, then checks at once", async () => {
  const world = new World();
  const tab = await connected(world);
  world.online = false;
  tab.fire("offline");
  await settle();
  assert.equal(tab.client.status, "offline");
  await world.clock.advance(60000);
  assert.equal(world.server.pending().length, 0, "no polls while offline");
  world.online = true;
  tab.fire("online");
  await settle();
  assert.equal(tab.client.status, "reconnecting");
  const check = world.server.poll();
  assert.equal(check.query.timeout, "0");
  check.respond(200, page(10));
  await settle();
  assert.deepEqual(tab.statuses.slice(-3), ["offline", "reconnecting", "connected"]);
});

test("401 stops polling: notify:unauthorized, status stopped", async () => {
  const world = new World();
  const tab = await connected(world);
  world.server.poll().respond(401, { error: "not_authenticated", detail: "log in" });
  await settle();
  await world.clock.advance(60000);
  assert.deepEqual(tab.of("unauthorized"), [{ error: "not_authenticated", detail: "log in" }]);
  assert.equal(tab.client.status, "stopped");
  assert.equal(world.server.pending().length, 0);
});

test("a token goes as a bearer header; the poll has the limit asked for", async () => {
  const world = new World();
  world.tab({ token: "s3cret", limit: 20 });
  await settle();
  const poll = world.server.poll();
  assert.equal(poll.init.headers.Authorization, "Bearer s3cret");
  assert.equal(poll.query.limit, "20");
  assert.equal(poll.init.cache, "no-store");
});

test("pollParams: the inbox-only poll, and one multi-stream poll with topics", () => {
  const cursors = { "room:1": "5", "room:2": null };
  const topicCursor = (topic) => cursors[topic];
  assert.deepEqual(pollParams({ cursor: null, topics: [], topicCursor, timeout: 25 }).params, {});
  assert.deepEqual(pollParams({ cursor: "9", topics: [], topicCursor, timeout: 25 }).params, { after: "9", timeout: 25 });
  assert.deepEqual(pollParams({ cursor: "9", topics: ["room:1"], topicCursor, timeout: 25 }).params, {
    streams: "inbox,room:1",
    after: "inbox:9,room:1:5",
    timeout: 25,
  });
  const fresh = pollParams({ cursor: "9", topics: ["room:1", "room:2"], topicCursor, timeout: 25 });
  assert.deepEqual(fresh.params, { streams: "inbox,room:1,room:2", after: "inbox:9,room:1:5" }, "a topic's snapshot: answered at once");
  assert.equal(fresh.asked, 0);
  assert.deepEqual(pollParams({ cursor: null, topics: ["room:2"], topicCursor, timeout: 25 }).params, { streams: "inbox,room:2" });
});
