/** The public methods besides polling: read marks, publish, desktop pop-ups, the CSRF token. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { NotifyError, safeUrl } from "../../notify/static/notify/lib/index.js";
import { note, page, settle, World } from "./fakes.js";

async function connected(world, options = {}, unread = []) {
  const tab = world.tab(options);
  await settle();
  world.server.poll().respond(200, page(10, unread));
  await settle();
  return tab;
}

function posts(world, path) {
  return world.server.pending().filter((r) => r.path === path);
}

test("markRead posts the ids with the CSRF token given, and marks them read in every tab", async () => {
  const world = new World();
  const tab = await connected(world, { csrfToken: "from-the-tag" }, [note(1), note(2)]);
  const other = world.tab();
  await settle();
  const done = tab.client.markRead(["2", 0, -1, "x"]);
  await settle();
  const [post] = posts(world, "/notify/read");
  assert.deepEqual(post.body, { ids: [2] });
  assert.equal(post.init.headers["X-CSRFToken"], "from-the-tag");
  assert.equal(post.init.keepalive, true);
  post.respond(200, { unread_count: 1 });
  assert.equal(await done, 1);
  await settle();
  assert.deepEqual(tab.of("read"), [{ ids: [2], unread_count: 1 }]);
  assert.deepEqual(other.of("read"), [{ ids: [2], unread_count: 1 }]);
  assert.equal(tab.client.notifications.find((n) => n.id === 2).read, true);
});

test("without a token given, the csrftoken cookie is sent (a page without the tag)", async () => {
  const world = new World();
  world.cookies = "sessionid=abc; csrftoken=from%20cookie; other=1";
  const tab = await connected(world);
  const done = tab.client.markAllRead();
  await settle();
  const [post] = posts(world, "/notify/read");
  assert.equal(post.init.headers["X-CSRFToken"], "from cookie");
  assert.deepEqual(post.body, { all: true });
  post.respond(200, { unread_count: 0 });
  assert.equal(await done, 0);
  world.cookies = "";
  tab.client.markAllRead();
  await settle();
  assert.equal(posts(world, "/notify/read")[0].init.headers["X-CSRFToken"], "", "none at all: the server says why");
});

test("markRead sends at most 1000 ids at once, and nothing for none", async () => {
  const world = new World();
  const tab = await connected(world);
  assert.equal(await tab.client.markRead([]), 0);
  const ids = Array.from({ length: 1500 }, (_, i) => i + 1);
  const done = tab.client.markRead(ids);
  await settle();
  assert.equal(posts(world, "/notify/read")[0].body.ids.length, 1000);
  posts(world, "/notify/read")[0].respond(200, { unread_count: 500 });
  await settle();
  assert.equal(posts(world, "/notify/read")[0].body.ids.length, 500);
  posts(world, "/notify/read")[0].respond(200, { unread_count: 0 });
  assert.equal(await done, 0);
});

test("a refused read mark rejects with a NotifyError; 401 stops the client", async () => {
  const world = new World();
  const tab = await connected(world);
  const done = tab.client.markRead([1]);
  await settle();
  posts(world, "/notify/read")[0].respond(401, { error: "not_authenticated", detail: "log in" });
  await assert.rejects(done, (error) => error instanceof NotifyError && error.status === 401 && error.code === "not_authenticated");
  assert.equal(tab.client.status, "stopped");
  assert.equal(tab.of("unauthorized").length, 1);
});

test("publish posts {data} to the topic's URL and resolves to the answer", async () => {
  const world = new World();
  const tab = await connected(world);
  const done = tab.client.publish("room:a_b", { text: "hi" });
  await settle();
  const [post] = posts(world, "/notify/topics/room%3Aa_b/publish");
  assert.deepEqual(post.body, { data: { text: "hi" } });
  post.respond(201, { message: { id: 5 }, cursor: "5" });
  assert.deepEqual(await done, { message: { id: 5 }, cursor: "5" });
});

test("publish refused: notify:forbidden (post) and a NotifyError; bad arguments throw at once", async () => {
  const world = new World();
  const tab = await connected(world);
  const done = tab.client.publish("room:staff", { text: "hi" });
  await settle();
  posts(world, "/notify/topics/room%3Astaff/publish")[0].respond(403, { error: "forbidden", detail: "no" });
  await assert.rejects(done, (error) => error.status === 403 && error.message === "no");
  assert.deepEqual(tab.of("forbidden"), [{ topic: "room:staff", action: "post", error: "forbidden", detail: "no" }]);
  await assert.rejects(tab.client.publish("inbox", {}), TypeError);
  await assert.rejects(tab.client.publish("room:1", "text"), TypeError);
  await assert.rejects(tab.client.publish("room:1", [1]), TypeError);
});

class FakeNotification {
  static permission = "default";
  static shown = [];
  static async requestPermission() {
    FakeNotification.permission = FakeNotification.answer;
    return FakeNotification.answer;
  }

  constructor(title, options) {
    this.title = title;
    this.options = options;
    FakeNotification.shown.push(this);
  }

  close() {
    this.closed = true;
  }
}

test("enableDesktop asks once; granted turns desktop pop-ups on", async () => {
  const world = new World();
  const tab = await connected(world);
  assert.equal(await tab.client.enableDesktop(), "unsupported");
  world.Notification = FakeNotification;
  FakeNotification.answer = "denied";
  assert.equal(await tab.client.enableDesktop(), "denied");
  assert.equal(tab.client.options.desktop, false);
  FakeNotification.answer = "granted";
  assert.equal(await tab.client.enableDesktop(), "granted");
  assert.equal(tab.client.options.desktop, true);
});

test("desktop pop-ups: only while hidden, one summary for more than three, a click follows a safe link", async () => {
  const world = new World();
  world.Notification = FakeNotification;
  FakeNotification.permission = "granted";
  FakeNotification.shown = [];
  const tab = await connected(world, { desktop: true });
  world.server.poll().respond(200, page(11, [note(11)]));
  await settle();
  assert.equal(FakeNotification.shown.length, 0, "the tab is visible");

  tab.visible = false;
  world.server.poll().respond(200, page(12, [note(12, { url: "/orders/12/" })]));
  await settle();
  world.server.poll().respond(200, page(13, [note(13, { url: "javascript:alert(1)" })]));
  await settle();
  world.server.poll().respond(200, page(17, [note(14), note(15), note(16), note(17)]));
  await settle();
  assert.deepEqual(FakeNotification.shown.map((n) => n.title), ["n12", "n13", "4 new notifications"]);
  FakeNotification.shown[0].onclick();
  FakeNotification.shown[1].onclick();
  assert.deepEqual(tab.navigated, ["https://example.com/orders/12/"]);
  assert.ok(FakeNotification.shown[1].closed);
});

test("a browser that will not show pop-ups from a page (Android Chrome) shows none, and nothing fails", async () => {
  const world = new World();
  world.Notification = class extends FakeNotification {
    constructor() {
      throw new TypeError("Illegal constructor: use ServiceWorkerRegistration.showNotification()");
    }
  };
  world.Notification.permission = "granted";
  const tab = await connected(world, { desktop: true });
  tab.visible = false;
  world.server.poll().respond(200, page(11, [note(11)]));
  await settle();
  assert.deepEqual(tab.of("message").map((n) => n.id), [11]);
});

test("safeUrl keeps http(s) and relative URLs only", () => {
  assert.equal(safeUrl("/a?b", "https://example.com/x"), "https://example.com/a?b");
  assert.equal(safeUrl("https://other.example/"), "https://other.example/");
  for (const bad of ["javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,x", "", null, "http://["]) assert.equal(safeUrl(bad), null, bad);
});
