/** A page on another origin than Django's (a single-page app): baseUrl, and a bearer token without CSRF. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { page, settle, World } from "./fakes.js";

const API = "https://api.example.org";

async function connected(world, options) {
  const tab = world.tab(options);
  await settle();
  world.server.poll().respond(200, page(10));
  await settle();
  return tab;
}

function urls(world) {
  return world.server.requests.map((r) => r.url.href);
}

test("baseUrl puts every endpoint on Django's origin, not the page's", async () => {
  const world = new World();
  const tab = world.tab({ baseUrl: API, token: "t0ken", topics: ["room:lobby"] });
  await settle();
  tab.client.markAllRead();
  tab.client.publish("room:lobby", { text: "hi" });
  await settle();
  assert.deepEqual(
    urls(world).map((url) => url.replace(/\?.*/, "")),
    [`${API}/notify/poll`, `${API}/notify/read`, `${API}/notify/topics/room%3Alobby/publish`],
  );
});

test("baseUrl is a prefix: a path under it is kept, whatever the slashes", async () => {
  for (const [baseUrl, pollUrl, expected] of [
    [`${API}/app`, "/notify/poll", `${API}/app/notify/poll`],
    [`${API}/app/`, "/notify/poll", `${API}/app/notify/poll`],
    [`${API}/app/`, "notify/poll", `${API}/app/notify/poll`],
    ["/app", "/notify/poll", "https://example.com/app/notify/poll"], // relative to the page (fakes.js)
    [API, "https://other.example.net/poll", "https://other.example.net/poll"], // absolute: as given
    [API, "//other.example.net/poll", "https://other.example.net/poll"],
  ]) {
    const world = new World();
    world.tab({ baseUrl, pollUrl });
    await settle();
    const [poll] = world.server.pending();
    assert.equal(poll.url.href.replace(/\?.*/, ""), expected, `${baseUrl} + ${pollUrl}`);
  }
});

test("without baseUrl the endpoints are relative to the page, as before", async () => {
  const world = new World();
  world.tab();
  await settle();
  assert.equal(world.server.poll().url.href, "https://example.com/notify/poll");
});

test("with a bearer token, POSTs send no X-CSRFToken: not even the page's own csrftoken cookie", async () => {
  const world = new World();
  world.cookies = "csrftoken=the-spa-origin-s";
  const tab = await connected(world, { baseUrl: API, token: "t0ken" });
  tab.client.markRead([1]);
  tab.client.publish("room:lobby", { text: "hi" });
  await settle();
  const posts = world.server.pending().filter((r) => r.init.method === "POST");
  assert.equal(posts.length, 2);
  for (const post of posts) {
    assert.deepEqual(post.init.headers, { Accept: "application/json", "Content-Type": "application/json", Authorization: "Bearer t0ken" });
    assert.equal(post.init.credentials, "same-origin", "no cookie goes to another origin");
  }
});

test("a token with a csrfToken given still sends it (a page that chose both)", async () => {
  const world = new World();
  const tab = await connected(world, { token: "t0ken", csrfToken: "given" });
  tab.client.markAllRead();
  await settle();
  const [post] = world.server.pending().filter((r) => r.init.method === "POST");
  assert.equal(post.init.headers["X-CSRFToken"], "given");
  assert.equal(post.init.headers.Authorization, "Bearer t0ken");
});
