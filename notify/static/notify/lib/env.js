/**
 * What the client takes from the browser, in one place: fetch, localStorage,
 * BroadcastChannel, Web Locks, timers, the clock, the network state, cookies and
 * window events. Everything else is plain logic, so Node runs it with stand-ins
 * (`new NotifyClient({env: {...}})` replaces any of these).
 */

const g = globalThis;

function localStorageOrNull() {
  try {
    return g.localStorage || null;
  } catch {
    return null; // storage disabled (a sandboxed frame): resume only within this page
  }
}

export function browserEnv(overrides) {
  return {
    fetch: (url, init) => g.fetch(url, init),
    storage: localStorageOrNull,
    channel: (name) => (typeof g.BroadcastChannel === "function" ? new g.BroadcastChannel(name) : null),
    // Read when electing: a page (or a test) may hide navigator.locks before that.
    locks: () => (g.navigator && g.navigator.locks && typeof g.navigator.locks.request === "function" ? g.navigator.locks : null),
    online: () => !(g.navigator && g.navigator.onLine === false),
    cookies: () => (g.document && typeof g.document.cookie === "string" ? g.document.cookie : ""),
    baseUrl: () => (g.location ? g.location.href : "http://localhost/"),
    target: () => g.document,
    Notification: () => (typeof g.Notification === "function" ? g.Notification : null),
    visible: () => !g.document || g.document.visibilityState === "visible",
    focus: () => g.focus(),
    navigate: (url) => {
      g.location.href = url;
    },
    listen(type, handler) {
      if (typeof g.addEventListener !== "function") return () => {};
      g.addEventListener(type, handler);
      return () => g.removeEventListener(type, handler);
    },
    now: () => (g.performance ? g.performance.now() : Date.now()),
    random: Math.random,
    setTimeout: (fn, ms) => g.setTimeout(fn, ms),
    clearTimeout: (id) => g.clearTimeout(id),
    setInterval: (fn, ms) => g.setInterval(fn, ms),
    clearInterval: (id) => g.clearInterval(id),
    ...overrides,
  };
}

/** The value of cookie `name` in a document.cookie string, or null. */
export function cookie(cookies, name) {
  for (const part of cookies.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return null;
}
