/** The tabs of one browser: one polls for all (Web Locks, or an election over the channel), the others listen. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { note, page, settle, World } from "./fakes.js";

const ELECTIONS = [
  ["Web Locks", { locks: true }],
  ["BroadcastChannel", { locks: false }],
];

/** Tabs opened one after another, the first answered its snapshot; the election settled. */
async function openTabs(world, count, options = {}) {
  const tabs = [];
  for (let i = 0; i < count; i += 1) {
    tabs.push(world.tab(options));
    await world.clock.advance(300); // an election over the channel: a claim waits 250 ms
    for (const poll of world.server.pending().filter((r) => !r.query.after)) poll.respond(200, page(10));
    await settle();
  }
  await world.clock.advance(1000);
  return tabs;
}

function leaders(tabs) {
  return tabs.filter((tab) => tab.client.leader);
}

for (const [name, setup] of ELECTIONS) {
  test(`${name}: tabs share one poll, and what it receives reaches every tab once`, async () => {
    const world = new World(setup);
    const tabs = await openTabs(world, 3);
    const [leader] = leaders(tabs);
    assert.equal(leaders(tabs).length, 1);
    assert.equal(world.server.pending().length, 1);
    assert.equal(world.server.poll().tab, leader.name);

    world.server.poll().respond(200, page(11, [note(11)]));
    await settle();
    for (const tab of tabs) {
      assert.deepEqual(tab.of("message").map((n) => n.id), [11], tab.name);
      assert.equal(tab.client.status, "connected", tab.name);
      assert.equal(tab.client.cursor, "11");
    }
  });

  test(`${name}: another tab takes over when the polling tab closes, from its cursor`, async () => {
    const world = new World(setup);
    const tabs = await openTabs(world, 2);
    const [leader] = leaders(tabs);
    const [other] = tabs.filter((tab) => tab !== leader);
    world.server.poll().respond(200, page(11, [note(11)]));
    await settle();

    await leader.close();
    await world.clock.advance(400);
    assert.ok(other.client.leader);
    const check = world.server.poll();
    assert.deepEqual([check.tab, check.query], [other.name, { after: "11", timeout: "0" }], "a check first");
    check.respond(200, page(12, [note(12)]));
    await settle();
    assert.deepEqual(world.server.poll().query, { after: "12", timeout: "25" });
    assert.deepEqual(other.of("message").map((n) => n.id), [11, 12]);
  });

  test(`${name}: a reload of the polling tab is not an outage in any tab (issue 17)`, async () => {
    const world = new World(setup);
    const tabs = await openTabs(world, 2);
    const [leader] = leaders(tabs);
    const [other] = tabs.filter((tab) => tab !== leader);
    world.server.poll().respond(200, page(11, [note(11)]));
    await settle();
    const before = other.statuses.length;

    const reloaded = await leader.reload(); // its poll fails after pagehide, as Chromium's does
    await world.clock.advance(400);
    assert.ok(other.client.leader && !reloaded.client.leader);
    // Live at once: the tab that took over checks the server, and holds its poll from there.
    world.server.poll().respond(200, page(11));
    await settle();
    assert.equal(world.server.poll().query.timeout, "25");

    assert.deepEqual(other.statuses.slice(before), [], "no reconnecting, not even for a moment");
    assert.equal(other.client.status, "connected");
    assert.deepEqual(reloaded.statuses, ["connecting", "connected"]);
    assert.deepEqual(world.hub.log.filter((m) => m.data.type === "status" && m.data.status !== "connected"), []);
  });
}

test("a real outage in the polling tab is shared: every tab says reconnecting, then connected", async () => {
  const world = new World();
  const tabs = await openTabs(world, 2);
  world.server.poll().fail();
  await settle();
  for (const tab of tabs) assert.equal(tab.client.status, "reconnecting", tab.name);
  await world.clock.advance(1000);
  world.server.poll().respond(200, page(10));
  await settle();
  for (const tab of tabs) assert.deepEqual(tab.statuses.slice(-2), ["reconnecting", "connected"], tab.name);
});

test("a tab opened while the polling tab is out gets the status and the list when it says hello", async () => {
  const world = new World();
  const [first] = await openTabs(world, 1);
  world.server.poll().respond(503, {});
  await settle();
  const late = world.tab();
  await settle();
  assert.equal(late.client.status, "reconnecting");
  assert.equal(late.of("sync").length, 1);
  assert.equal(first.client.status, "reconnecting");
});

test("a status said after bye is not news: the tab that takes over decides", async () => {
  const world = new World();
  const tabs = await openTabs(world, 2);
  const [leader] = leaders(tabs);
  const [other] = tabs.filter((tab) => tab !== leader);
  leader.client._tabs.hide(); // pagehide: bye
  leader.client._tabs.post({ type: "status", status: "reconnecting" }); // what an older notify.js said next
  await settle();
  assert.equal(other.client.status, "connected");
});

test("over BroadcastChannel, two polling tabs that meet: the higher id steps down", async () => {
  const world = new World({ locks: false });
  world.hub.partitioned = true; // they cannot hear each other: each elects itself
  const tabs = [world.tab(), world.tab()];
  await world.clock.advance(300);
  for (const poll of world.server.pending()) poll.respond(200, page(10));
  await settle();
  assert.equal(leaders(tabs).length, 2);
  world.hub.partitioned = false;
  await world.clock.advance(1000); // a heartbeat each

  const [stays] = leaders(tabs);
  assert.equal(leaders(tabs).length, 1);
  assert.ok(tabs.every((tab) => tab === stays || tab.client._id > stays.client._id));
  assert.equal(world.server.pending().length, 1, "the other's poll was aborted");
  assert.equal(world.server.poll().tab, stays.name);
  for (const tab of tabs) assert.equal(tab.client.status, "connected", "stepping down is no outage");
});

test("over BroadcastChannel, a silent polling tab (crashed) is replaced within 3 s of silence (+ a tick, a claim)", async () => {
  const world = new World({ locks: false });
  const tabs = await openTabs(world, 2);
  const [leader] = leaders(tabs);
  const [other] = tabs.filter((tab) => tab !== leader);
  const lastBeat = Math.max(...world.hub.log.filter((m) => m.data.type === "heartbeat").map((m) => m.at));
  world.clock.clearOwner(leader.name); // no heartbeats, no bye
  world.hub.closeOwner(leader.name);
  while (!other.client.leader) await world.clock.advance(50);
  const silence = world.clock.now() - lastBeat;
  assert.ok(silence > 3000 && silence <= 3000 + 1000 + 250 + 50, `took over after ${silence} ms of silence`);
});

test("without BroadcastChannel or Web Locks, every tab polls for itself", async () => {
  const world = new World({ locks: false, channel: false });
  world.tab();
  world.tab();
  await settle();
  assert.equal(world.server.pending().length, 2);
});

test("unauthorized in the polling tab stops every tab", async () => {
  const world = new World();
  const tabs = await openTabs(world, 2);
  world.server.poll().respond(401, { error: "not_authenticated" });
  await settle();
  for (const tab of tabs) {
    assert.equal(tab.client.status, "stopped");
    assert.deepEqual(tab.of("unauthorized"), [{ error: "not_authenticated" }]);
  }
  await world.clock.advance(60000);
  assert.equal(world.server.pending().length, 0);
});

test("stop() hands the poll over and says stopped", async () => {
  const world = new World();
  const tabs = await openTabs(world, 2);
  const [leader] = leaders(tabs);
  const [other] = tabs.filter((tab) => tab !== leader);
  leader.client.stop();
  leader.client.stop(); // twice: nothing more
  await settle();
  assert.equal(leader.client.status, "stopped");
  assert.ok(other.client.leader);
  assert.equal(world.server.poll().tab, other.name);
  assert.equal(leader.client.start(), leader.client, "and it can start again");
});

test("a page back from the back/forward cache polls on", async () => {
  const world = new World({ locks: false, channel: false });
  const tab = world.tab();
  await settle();
  world.server.poll().respond(200, page(10));
  await settle();
  tab.fire("pagehide", { persisted: true });
  world.server.poll().fail(); // the browser froze it
  await settle();
  assert.equal(world.server.pending().length, 0);
  assert.equal(tab.client.status, "connected");
  tab.fire("pageshow", { persisted: true });
  await settle();
  assert.equal(world.server.poll().query.timeout, "0");
});

test("a Web Lock that fails is reported on the console, not thrown", async (t) => {
  const world = new World();
  const errors = t.mock.method(console, "error", () => {});
  world.locks.request = () => Promise.reject(new Error("SecurityError"));
  world.tab();
  await settle();
  assert.equal(errors.mock.calls[0].arguments[0], "notify: lock failed");
});
