/**
 * Stand-ins for what the client takes from the browser (notify/static/notify/lib/env.js):
 * a clock with timers, a server behind fetch, localStorage, BroadcastChannel, Web
 * Locks, and tabs that open, close and reload. Everything is in one `World` per test.
 */
import { NotifyClient } from "../../notify/static/notify/lib/index.js";

/** Lets every promise chain started so far run to its end (fetch answers, loops). */
export async function settle() {
  for (let i = 0; i < 30; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

/** A clock that moves only when told; timers belong to an owner (a tab) that can vanish. */
export class FakeClock {
  constructor() {
    this.time = 1_000_000;
    this.timers = new Map();
    this.nextId = 1;
  }

  now() {
    return this.time;
  }

  add(owner, fn, ms, every) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + Math.max(0, Number(ms) || 0), fn, every, owner });
    return id;
  }

  clear(id) {
    this.timers.delete(id);
  }

  clearOwner(owner) {
    for (const [id, timer] of this.timers) if (timer.owner === owner) this.timers.delete(id);
  }

  /** Moves time on by `ms`, running each timer due on the way (and what it starts). */
  async advance(ms) {
    const end = this.time + ms;
    await settle();
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) if (timer.at <= end && (!next || timer.at < next[1].at)) next = [id, timer];
      if (!next) break;
      const [id, timer] = next;
      this.time = Math.max(this.time, timer.at);
      if (timer.every) timer.at += timer.every;
      else this.timers.delete(id);
      timer.fn();
      await settle();
    }
    this.time = end;
    await settle();
  }
}

/** The server behind fetch: each request waits until the test answers it. */
export class FakeServer {
  constructor() {
    this.requests = [];
  }

  fetch(url, init = {}, tab = null) {
    return new Promise((resolve, reject) => {
      const parsed = new URL(url);
      const request = {
        url: parsed,
        path: parsed.pathname,
        query: Object.fromEntries(parsed.searchParams),
        init,
        tab,
        settled: false,
        aborted: false,
        body: init.body ? JSON.parse(init.body) : null,
        respond(status, body, headers = {}) {
          if (request.settled) return;
          request.settled = true;
          const text = typeof body === "string" ? body : JSON.stringify(body);
          resolve(new Response(text, { status, headers: { "Content-Type": "application/json", ...headers } }));
        },
        fail(error = new TypeError("Failed to fetch")) {
          if (request.settled) return;
          request.settled = true;
          reject(error);
        },
      };
      if (init.signal) {
        init.signal.addEventListener("abort", () => {
          request.aborted = true;
          request.fail(init.signal.reason);
        });
      }
      this.requests.push(request);
    });
  }

  /** Requests not answered yet (of `tab`, if given). */
  pending(tab) {
    return this.requests.filter((r) => !r.settled && (tab === undefined || r.tab === tab));
  }

  polls(tab) {
    return this.requests.filter((r) => r.path === "/notify/poll" && (tab === undefined || r.tab === tab));
  }

  /** The one poll in flight; fails the test if there is none, or more than one. */
  poll() {
    const polls = this.pending().filter((r) => r.path === "/notify/poll");
    if (polls.length !== 1) throw new Error(`${polls.length} polls in flight: ${polls.map((r) => r.url.search).join(" ")}`);
    return polls[0];
  }
}

export class FakeStorage {
  constructor() {
    this.items = new Map();
  }

  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }

  setItem(key, value) {
    this.items.set(key, String(value));
  }

  removeItem(key) {
    this.items.delete(key);
  }
}

/** BroadcastChannel: a message reaches every other open channel of the name, later. */
export class ChannelHub {
  constructor(now = () => 0) {
    this.now = now;
    this.channels = new Set();
    this.log = [];
    this.partitioned = false; // drop every message (two tabs that cannot hear each other)
  }

  open(name, owner) {
    const hub = this;
    const channel = {
      name,
      owner,
      onmessage: null,
      postMessage(data) {
        hub.log.push({ from: owner, data, at: hub.now() });
        if (hub.partitioned) return;
        const copy = structuredClone(data);
        for (const other of hub.channels) {
          if (other !== channel && other.name === name) setImmediate(() => hub.channels.has(other) && other.onmessage && other.onmessage({ data: copy }));
        }
      },
      close() {
        hub.channels.delete(channel);
      },
    };
    this.channels.add(channel);
    return channel;
  }

  closeOwner(owner) {
    for (const channel of this.channels) if (channel.owner === owner) this.channels.delete(channel);
  }
}

/** Web Locks: one holder per name, the others wait in order; a closed tab's lock is freed. */
export class FakeLocks {
  constructor() {
    this.held = new Map(); // name -> owner
    this.waiting = new Map(); // name -> [{owner, callback, resolve, reject}]
  }

  forTab(owner) {
    return { request: (name, options, callback) => this.request(owner, name, options, callback) };
  }

  request(owner, name, { signal } = {}, callback) {
    return new Promise((resolve, reject) => {
      const entry = { owner, callback, resolve, reject };
      if (!this.waiting.has(name)) this.waiting.set(name, []);
      this.waiting.get(name).push(entry);
      if (signal) {
        signal.addEventListener("abort", () => {
          const queue = this.waiting.get(name);
          if (queue.includes(entry)) {
            queue.splice(queue.indexOf(entry), 1);
            reject(new DOMException("aborted", "AbortError"));
          }
        });
      }
      this.grant(name);
    });
  }

  grant(name) {
    const queue = this.waiting.get(name) || [];
    if (this.held.has(name) || !queue.length) return;
    const entry = queue.shift();
    this.held.set(name, entry.owner);
    Promise.resolve()
      .then(() => entry.callback())
      .then(entry.resolve, entry.reject)
      .finally(() => {
        if (this.held.get(name) === entry.owner) this.release(name);
      });
  }

  release(name) {
    this.held.delete(name);
    this.grant(name);
  }

  closeOwner(owner) {
    for (const queue of this.waiting.values()) {
      for (const entry of queue.filter((e) => e.owner === owner)) queue.splice(queue.indexOf(entry), 1);
    }
    for (const [name, holder] of this.held) if (holder === owner) this.release(name);
  }
}

let tabs = 0;

/** mulberry32: the same numbers in every run. */
function seeded(seed) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One browser profile: its storage, channel, locks (or none), clock and the server. */
export class World {
  constructor({ locks = true, channel = true } = {}) {
    this.clock = new FakeClock();
    this.server = new FakeServer();
    this.storage = new FakeStorage();
    this.hub = channel ? new ChannelHub(() => this.clock.now()) : null;
    this.locks = locks ? new FakeLocks() : null;
    this.online = true;
    this.cookies = "";
    this.random = seeded(17); // tab ids, jitter; a test that needs a value sets its own
    this.Notification = null;
  }

  /** A tab running a NotifyClient with `options`; started unless `start: false`. */
  tab(options = {}, { start = true } = {}) {
    const tab = new Tab(this, options);
    if (start) tab.client.start();
    return tab;
  }
}

export class Tab {
  constructor(world, options) {
    this.world = world;
    this.name = `tab${++tabs}`;
    this.visible = true;
    this.listeners = new Map();
    this.events = [];
    this.navigated = [];
    this.target = new EventTarget();
    for (const type of ["message", "sync", "unread", "read", "status", "unauthorized", "topic", "gap", "forbidden", "presence"]) {
      this.target.addEventListener(`notify:${type}`, (event) => this.events.push([type, event.detail]));
    }
    const { clock } = world;
    const owner = this.name;
    this.env = {
      fetch: (url, init) => world.server.fetch(url, init, owner),
      storage: () => world.storage,
      channel: (name) => (world.hub ? world.hub.open(name, owner) : null),
      locks: () => (world.locks ? world.locks.forTab(owner) : null),
      online: () => world.online,
      cookies: () => world.cookies,
      baseUrl: () => "https://example.com/inbox/",
      target: () => this.target,
      Notification: () => world.Notification,
      visible: () => this.visible,
      focus: () => {},
      navigate: (url) => this.navigated.push(url),
      listen: (type, handler) => {
        if (!this.listeners.has(type)) this.listeners.set(type, new Set());
        this.listeners.get(type).add(handler);
        return () => this.listeners.get(type).delete(handler);
      },
      now: () => clock.now(),
      random: () => world.random(),
      setTimeout: (fn, ms) => clock.add(owner, fn, ms, 0),
      clearTimeout: (id) => clock.clear(id),
      setInterval: (fn, ms) => clock.add(owner, fn, ms, ms),
      clearInterval: (id) => clock.clear(id),
    };
    this.client = new NotifyClient({ user: "7", ...options, env: this.env });
  }

  /** A window event (online, offline, pagehide, pageshow). */
  fire(type, event = {}) {
    for (const handler of this.listeners.get(type) || []) handler(event);
  }

  /** The statuses this tab dispatched, in order. */
  get statuses() {
    return this.events.filter(([type]) => type === "status").map(([, detail]) => detail);
  }

  of(type) {
    return this.events.filter(([t]) => t === type).map(([, detail]) => detail);
  }

  /**
   * The document goes away: pagehide, then the browser aborts its requests (and, as
   * Chromium does on a reload, the page's code still sees the poll fail), then its
   * channel, lock and timers are gone.
   */
  async close() {
    this.fire("pagehide", { persisted: false });
    for (const request of this.world.server.pending(this.name)) request.fail(new TypeError("Failed to fetch"));
    await settle();
    if (this.world.hub) this.world.hub.closeOwner(this.name);
    if (this.world.locks) this.world.locks.closeOwner(this.name);
    this.world.clock.clearOwner(this.name);
    await settle();
  }

  /** close(), and the same page opened again. */
  async reload(options = {}) {
    await this.close();
    const tab = this.world.tab({ ...this.client.options, env: undefined, ...options });
    await settle();
    return tab;
  }
}

/** A notification as the server lists it. */
export function note(id, extra = {}) {
  return { id, title: `n${id}`, body: "", url: "", level: "info", read: false, created_at: "2026-11-30T12:00:00Z", ...extra };
}

/** An inbox poll's answer. */
export function page(cursor, notifications = [], unread = notifications.length) {
  return { notifications, cursor: String(cursor), unread_count: unread };
}
