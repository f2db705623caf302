/** The HTTP side: GET a poll (abortable, with a stall guard) and POST read marks and messages. */

import { cookie } from "./env.js";

// A URL with a scheme ("https:") or a host ("//host"): not put under options.baseUrl.
const ABSOLUTE = /^([a-z][a-z0-9+.-]*:|\/\/)/i;

// A held poll that outlives its timeout by this much is dead (a half-open connection).
export const STALL_GRACE_MS = 15000;

/** A refusal from the server: `status`, `code` (the JSON `error`), `message` (its `detail`). */
export class NotifyError extends Error {
  constructor(status, code, detail) {
    super(detail || code || `HTTP ${status}`);
    this.name = "NotifyError";
    this.status = status;
    this.code = code;
  }
}

async function json(response) {
  try {
    return await response.json();
  } catch {
    return null; // not JSON: a proxy's HTML error page
  }
}

export class Http {
  /** `options` is read live (the client's); `env` gives fetch, timers, cookies and the base URL. */
  constructor(options, env) {
    this.options = options;
    this.env = env;
    this.current = null; // the AbortController of the poll in flight
  }

  headers(extra) {
    const headers = { Accept: "application/json", ...extra };
    if (this.options.token) headers.Authorization = `Bearer ${this.options.token}`;
    return headers;
  }

  /** The CSRF token: the one given (the tag renders it: the cookie may be HttpOnly), else the cookie's. */
  csrfToken() {
    return this.options.csrfToken || cookie(this.env.cookies(), "csrftoken") || "";
  }

  /**
   * Where `path` is: under options.baseUrl if given (joined as a prefix, so that
   * "https://api.example.com/app" + "/notify/poll" keeps "/app"), unless `path` is
   * absolute; else relative to the page.
   */
  url(path) {
    const base = this.options.baseUrl;
    if (base && !ABSOLUTE.test(path)) path = `${String(base).replace(/\/+$/, "")}/${path.replace(/^\/+/, "")}`;
    return new URL(path, this.env.baseUrl());
  }

  /**
   * GET the poll URL with `params`; resolves to {status, headers, body}, or
   * {status: 0, error, aborted} when it fails (`aborted`: the reason given to abort()).
   */
  async poll(params, timeout) {
    const url = this.url(this.options.pollUrl);
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
    if (this.options.limit) url.searchParams.set("limit", this.options.limit);
    const controller = new AbortController();
    this.current = controller;
    const stall = this.env.setTimeout(() => controller.abort("stalled"), timeout * 1000 + STALL_GRACE_MS);
    try {
      const response = await this.env.fetch(url, {
        headers: this.headers(),
        credentials: "same-origin",
        cache: "no-store",
        signal: controller.signal,
      });
      const body = await json(response);
      if (body === null && controller.signal.aborted) throw new Error("aborted while reading the answer");
      return { status: response.status, headers: response.headers, body };
    } catch (error) {
      return { status: 0, error, aborted: controller.signal.aborted ? controller.signal.reason : null };
    } finally {
      this.env.clearTimeout(stall);
      if (this.current === controller) this.current = null;
    }
  }

  /** Abort the poll in flight, if any; `reason` comes back as its answer's `aborted`. */
  abort(reason) {
    if (this.current) this.current.abort(reason);
  }

  /** GET `path`; resolves to {status, ok, body} (body {} when not JSON). */
  async get(path) {
    const response = await this.env.fetch(this.url(path), {
      headers: this.headers(),
      credentials: "same-origin",
      cache: "no-store",
    });
    return { status: response.status, ok: response.ok, body: (await json(response)) || {} };
  }

  /** POST `payload` as JSON; resolves to {status, ok, body} (body {} when not JSON). */
  async post(path, payload, { keepalive = false } = {}) {
    const headers = { "Content-Type": "application/json" };
    // With a bearer token the server checks no CSRF token (a token is not ambient, as a
    // cookie is); a page on another origin has none, and its own cookie's stays home.
    if (!this.options.token || this.options.csrfToken) headers["X-CSRFToken"] = this.csrfToken();
    const response = await this.env.fetch(this.url(path), {
      method: "POST",
      headers: this.headers(headers),
      credentials: "same-origin",
      body: JSON.stringify(payload),
      keepalive,
    });
    return { status: response.status, ok: response.ok, body: (await json(response)) || {} };
  }
}
