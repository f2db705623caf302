/** The client's options with their defaults (docs/js-client.md), and the server's rules it checks. */

export const DEFAULTS = Object.freeze({
  baseUrl: null, // where Django is, if not on this page's origin: the URLs below are under it
  pollUrl: "/notify/poll",
  readUrl: "/notify/read",
  publishUrl: "/notify/topics/{topic}/publish",
  presenceUrl: "/notify/topics/{topic}/presence", // GET: who follows a topic now
  timeout: 25, // seconds a poll is held; lowered by itself behind a proxy that cuts sooner
  limit: null, // notifications per answer; null: the server's default
  user: "default", // names storage keys, the lock and the channel: one stream per user
  csrfToken: null, // for POSTs; falls back to the csrftoken cookie
  token: null, // "Authorization: Bearer" instead of the session cookie (and no CSRF token then)
  target: null, // where events are dispatched; document by default
  desktop: false, // show Notification API pop-ups once the user allowed them
  backoffBase: 1000, // ms: first retry waits up to this long (full jitter)...
  backoffMax: 30000, // ...doubling up to this cap
  minTimeout: 1, // seconds: never ask for less when adapting to a proxy
  keepSeen: 500, // ids remembered as announced, per user
  keepState: 100, // notifications kept in memory for late tabs and widgets
  topics: [], // topic streams followed besides the inbox, in the same poll
  env: null, // stand-ins for the browser's fetch, storage, timers... (tests); see env.js
});

// The server's rules: topic names (docs/topics.md), and at most 10 streams in one
// poll, the inbox being one of them.
export const TOPIC_NAME = /^[A-Za-z0-9_.:-]{1,100}$/;
export const MAX_TOPICS = 9;
// A topic's join and leave events are the messages of this topic plus its name (docs/topics.md#presence).
export const PRESENCE_PREFIX = "presence:";

export function isTopic(name) {
  return typeof name === "string" && TOPIC_NAME.test(name) && name !== "inbox";
}

export function checkTopic(name) {
  if (!isTopic(name)) {
    throw new TypeError(
      `notify: a topic name is 1 to 100 characters of A-Z a-z 0-9 _ . : - and not "inbox"; got ${JSON.stringify(name)}`,
    );
  }
  return name;
}
