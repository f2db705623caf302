/** Presence: who follows a topic (presence()), and its join and leave events (followPresence()). */
import assert from "node:assert/strict";
import { test } from "node:test";

import { page, settle, World } from "./fakes.js";

async function connected(world, options = {}) {
  const tab = world.tab(options);
  await settle();
  world.server.poll().respond(200, page(10));
  await settle();
  return tab;
}

function requests(world, path) {
  return world.server.pending().filter((r) => r.path === path);
}

function event(id, kind, user, at) {
  return {
    id,
    topic: "presence:room:1",
    data: { event: kind, user_id: user.id, at },
    sender: user,
    created_at: "2026-12-01T05:00:00Z",
  };
}

test("presence() GETs the topic's presence URL and resolves to the answer", async () => {
  const world = new World();
  const tab = await connected(world);
  const done = tab.client.presence("room:a_b");
  await settle();
  const [get] = requests(world, "/notify/topics/room%3Aa_b/presence");
  assert.equal(get.init.method, undefined, "a GET");
  const answer = { topic: "room:a_b", count: 1, users: [{ id: 3, username: "bob" }], events: "presence:room:a_b" };
  get.respond(200, answer);
  assert.deepEqual(await done, answer);
});

test("presence() refused: notify:forbidden (read) and a NotifyError; presence off: a NotifyError; bad names throw", async () => {
  const world = new World();
  const tab = await connected(world);
  const refused = tab.client.presence("room:staff");
  await settle();
  requests(world, "/notify/topics/room%3Astaff/presence")[0].respond(403, { error: "forbidden", detail: "no" });
  await assert.rejects(refused, (error) => error.status === 403 && error.message === "no");
  assert.deepEqual(tab.of("forbidden"), [{ topic: "room:staff", action: "read", error: "forbidden", detail: "no" }]);
  const off = tab.client.presence("room:1");
  await settle();
  requests(world, "/notify/topics/room%3A1/presence")[0].respond(404, { error: "presence_off", detail: "off" });
  await assert.rejects(off, (error) => error.status === 404 && error.code === "presence_off");
  await assert.rejects(tab.client.presence("bad name"), TypeError);
});

test("followPresence() polls presence:<topic> beside it; its messages come as notify:presence, not notify:topic", async () => {
  const world = new World();
  const tab = world.tab({ topics: ["room:1"] });
  await settle();
  world.server.poll().respond(200, { streams: { inbox: page(10), "room:1": { messages: [], cursor: "0" } } });
  await settle();
  tab.client.followPresence("room:1");
  await settle();
  assert.deepEqual(world.server.poll().query.streams, "inbox,room:1,presence:room:1");
  const alice = { id: 2, username: "alice" };
  const bob = { id: 3, username: "bob" };
  world.server.poll().respond(200, {
    streams: { inbox: page(10), "room:1": { messages: [], cursor: "0" }, "presence:room:1": { messages: [event(1, "join", alice, 100)], cursor: "1" } },
  });
  await settle();
  world.server.poll().respond(200, {
    streams: {
      inbox: page(10),
      "room:1": { messages: [], cursor: "0" },
      "presence:room:1": { messages: [event(2, "join", bob, 200), event(3, "leave", bob, 300)], cursor: "3" },
    },
  });
  await settle();
  assert.deepEqual(tab.of("presence"), [
    { topic: "room:1", event: "join", user: alice, at: 100, snapshot: true },
    { topic: "room:1", event: "join", user: bob, at: 200, snapshot: false },
    { topic: "room:1", event: "leave", user: bob, at: 300, snapshot: false },
  ]);
  assert.deepEqual(tab.of("topic"), []);
  tab.client.unfollowPresence("room:1");
  await settle();
  assert.deepEqual(world.server.poll().query.streams, "inbox,room:1");
});
