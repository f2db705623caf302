/** The browser glue (env.js) where Node has the same parts, and the package's face. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { browserEnv, cookie } from "../../notify/static/notify/lib/env.js";
import { Inbox } from "../../notify/static/notify/lib/inbox.js";
import * as lib from "../../notify/static/notify/lib/index.js";
import { note } from "./fakes.js";

test("cookie() reads one cookie of document.cookie, decoded", () => {
  assert.equal(cookie("a=1; csrftoken=x%3Dy; b=2", "csrftoken"), "x=y");
  assert.equal(cookie("xcsrftoken=1", "csrftoken"), null);
  assert.equal(cookie("", "csrftoken"), null);
});

test("browserEnv without a browser: no storage, no locks, online, a base URL; overrides win", () => {
  const env = browserEnv({ online: () => false });
  assert.equal(env.storage(), null);
  assert.equal(env.locks(), null);
  assert.equal(env.online(), false);
  assert.equal(env.cookies(), "");
  assert.equal(env.baseUrl(), "http://localhost/");
  assert.equal(typeof env.now(), "number");
  const unlisten = env.listen("online", () => {});
  unlisten();
  const timer = env.setTimeout(() => assert.fail("cleared"), 10);
  env.clearTimeout(timer);
  const interval = env.setInterval(() => assert.fail("cleared"), 10);
  env.clearInterval(interval);
});

test("the package's name resolves to the same module (exports in package.json)", async () => {
  const byName = await import("django-notify-longpoll");
  assert.equal(byName.NotifyClient, lib.NotifyClient);
  assert.deepEqual(Object.keys(byName).sort(), Object.keys(lib).sort());
});

test("the inbox keeps the newest keepState notifications", () => {
  const inbox = new Inbox(2);
  inbox.remember([note(3), note(1), note(2)]);
  assert.deepEqual(inbox.notifications.map((n) => n.id), [3, 2]);
});
