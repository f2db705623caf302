/*
 * notify.js: the browser client of the notify long-poll API. No build step, no
 * dependencies; everything lives in the one global `window.Notify`.
 *
 *   {% load notify %}{% notify_client %}     renders <script data-notify-...> and
 *                                            starts `Notify.client` for the user.
 *   new Notify.NotifyClient({pollUrl, readUrl, user, csrfToken, topics}).start()
 *
 * One tab per browser and user holds the long poll (the leader: a Web Lock, or
 * an election over BroadcastChannel where Web Locks are missing); it hands what
 * it receives to the other tabs over a BroadcastChannel. The cursor and the ids
 * already announced live in localStorage, so a reload resumes where it stopped.
 *
 * Topics (a chat room, a lobby): with `topics: ["room:42"]`, `data-notify-topics`
 * or `follow(topic)`, the one poll follows the inbox and the topics together
 * (GET pollUrl?streams=inbox,room:42&after=<compound cursor>); each topic's cursor
 * is kept in localStorage too. Without topics the poll is the inbox-only one.
 *
 * Events, dispatched on `document` (or `options.target`):
 *   notify:message       detail = a notification new to this browser
 *   notify:sync          detail = {notifications, unread_count}: what is known now
 *   notify:unread        detail = the unread count
 *   notify:read          detail = {ids (null for all), unread_count}
 *   notify:status        detail = "connecting" | "connected" | "reconnecting" | "offline" | "stopped"
 *   notify:unauthorized  detail = {error, detail}; polling has stopped
 *   notify:topic         detail = {topic, message, snapshot}: a message of a followed topic
 *                        new to this tab (snapshot: true for a topic's newest messages,
 *                        listed when it is first followed, rather than live ones)
 *   notify:gap           detail = {topic, oldest_cursor}: the topic no longer kept messages
 *                        after our cursor; following it again from the oldest it keeps
 *   notify:forbidden     detail = {topic, action, error, detail}: the site refused the topic
 *                        ("read": no longer followed; "post": a publish() was refused)
 */
(() => {
  "use strict";

  const Notify = (window.Notify = window.Notify || {});
  if (Notify.NotifyClient) return; // included twice

  const DEFAULTS = {
    pollUrl: "/notify/poll",
    readUrl: "/notify/read",
    timeout: 25, // seconds a poll is held; lowered by itself behind a proxy that cuts sooner
    limit: null, // notifications per answer; null: the server's default
    user: "default", // names storage keys, the lock and the channel: one stream per user
    csrfToken: null, // for POST /notify/read; falls back to the csrftoken cookie
    token: null, // "Authorization: Bearer" instead of the session cookie
    target: null, // where events are dispatched; document by default
    desktop: false, // show Notification API pop-ups once the user allowed them
    backoffBase: 1000, // ms: first retry waits up to this long (full jitter)...
    backoffMax: 30000, // ...doubling up to this cap
    minTimeout: 1, // seconds: never ask for less when adapting to a proxy
    keepSeen: 500, // ids remembered as announced, per user
    keepState: 100, // notifications kept in memory for late tabs and widgets
    topics: [], // topic streams followed besides the inbox, in the same poll
    publishUrl: "/notify/topics/{topic}/publish",
  };

  // The server's rules: topic names (README "Topic streams"), and at most 10 streams
  // in one poll, the inbox being one of them.
  const TOPIC_NAME = /^[A-Za-z0-9_.:-]{1,100}$/;
  const MAX_TOPICS = 9;

  // A poll that fails this long after it started, yet well before its timeout,
  // was most likely cut by something in between (a proxy's read timeout).
  const CUT_MIN_MS = 1000;
  const CUTS_BEFORE_LOWERING = 2;
  const SUCCESSES_BEFORE_PROBING = 50;
  // A held poll that outlives its timeout by this much is dead (a half-open connection).
  const STALL_GRACE_MS = 15000;
  // Election without Web Locks (BroadcastChannel only).
  const HEARTBEAT_MS = 1000;
  const LEADER_SILENT_MS = 3000;
  const CLAIM_WAIT_MS = 250;

  class NotifyError extends Error {
    constructor(status, code, detail) {
      super(detail || code || `HTTP ${status}`);
      this.name = "NotifyError";
      this.status = status;
      this.code = code;
    }
  }

  const storage = {
    get(key) {
      try {
        return window.localStorage.getItem(key);
      } catch (e) {
        return null; // storage disabled: resume only within this page
      }
    },
    set(key, value) {
      try {
        if (value === null) window.localStorage.removeItem(key);
        else window.localStorage.setItem(key, value);
      } catch (e) {
        /* full or disabled: the in-memory copy still works */
      }
    },
  };

  function cookie(name) {
    const match = document.cookie.match(new RegExp(`(?:^|;\\s*)${name}=([^;]*)`));
    return match ? decodeURIComponent(match[1]) : null;
  }

  function checkTopic(name) {
    if (typeof name !== "string" || !TOPIC_NAME.test(name) || name === "inbox") {
      throw new TypeError(`notify: a topic name is 1 to 100 characters of A-Z a-z 0-9 _ . : - and not "inbox"; got ${JSON.stringify(name)}`);
    }
    return name;
  }

  function randomId() {
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  }

  class NotifyClient {
    constructor(options = {}) {
      // Read live: changing client.options (e.g. backoffMax) takes effect at the next retry.
      this.options = { ...DEFAULTS, ...options };
      this.status = "stopped";
      this.unreadCount = null;
      this.cursor = null;
      this.leader = false;
      this.running = false;
      this._id = randomId();
      this._state = new Map(); // id -> notification, newest kept
      this._seen = new Set(); // ids announced as notify:message
      this._synced = false; // got the unread list (from the server or the leader)
      this._timeout = Number(this.options.timeout);
      this._wake = null;
      this._current = null;
      this._onOnline = () => this._wakeUp();
      this._onOffline = () => this._current && this._current.abort();
      this._onPageHide = () => this._post(this.leader ? { type: "bye", from: this._id } : { type: "leave", from: this._id });
      // Topics: this tab's, and (leader) those of the other tabs, by tab id.
      this._topics = [];
      for (const name of this.options.topics || []) {
        try {
          if (!this._topics.includes(checkTopic(name))) this._topics.push(name);
        } catch (error) {
          console.warn(error.message);
        }
      }
      this._peers = new Map();
      this._topicCursors = new Map(); // topic -> cursor (a string), or absent: its snapshot first
      this._topicSeen = new Set(); // topic message ids announced in this tab
      this._restarting = false;
    }

    get _key() {
      return `notify:${this.options.user}`;
    }

    get target() {
      return this.options.target || document;
    }

    /** The poll timeout asked for now: options.timeout, or less behind a proxy that cuts polls. */
    get requestedTimeout() {
      return this._timeout;
    }

    /* ---- public API ---- */

    start() {
      if (this.running) return this;
      this.running = true;
      this._stop = new AbortController();
      this._setStatus("connecting");
      window.addEventListener("online", this._onOnline);
      window.addEventListener("offline", this._onOffline);
      window.addEventListener("pagehide", this._onPageHide);
      if (typeof BroadcastChannel === "function") {
        this._channel = new BroadcastChannel(`${this._key}:channel`);
        this._channel.onmessage = (event) => this._receive(event.data || {});
        this._post({ type: "hello", from: this._id, topics: this._topics });
      }
      this._elect();
      return this;
    }

    stop() {
      if (!this.running) return this;
      this.running = false;
      this._stop.abort();
      this._wakeUp();
      if (this._current) this._current.abort();
      clearInterval(this._electionTimer);
      window.removeEventListener("online", this._onOnline);
      window.removeEventListener("offline", this._onOffline);
      window.removeEventListener("pagehide", this._onPageHide);
      if (this._channel) {
        this._post(this.leader ? { type: "bye", from: this._id } : { type: "leave", from: this._id });
        this._channel.close();
        this._channel = null;
      }
      this.leader = false;
      this._setStatus("stopped");
      return this;
    }

    /** Mark notifications read; resolves to the new unread count. */
    async markRead(ids) {
      const list = Array.from(ids || [], Number).filter((id) => Number.isInteger(id) && id > 0);
      if (!list.length) return this.unreadCount;
      let count = this.unreadCount;
      for (let i = 0; i < list.length; i += 1000) {
        count = await this._read({ ids: list.slice(i, i + 1000) }); // the server takes 1000 at once
      }
      return count;
    }

    /** Mark every notification of the user read; resolves to the new unread count (0). */
    markAllRead() {
      return this._read({ all: true });
    }

    /** What is known now, newest first. */
    get notifications() {
      return Array.from(this._state.values()).sort((a, b) => b.id - a.id);
    }

    /** Ask for desktop notifications (call it from a click); resolves to the permission. */
    async enableDesktop() {
      if (typeof Notification !== "function") return "unsupported";
      const permission = await Notification.requestPermission();
      if (permission === "granted") this.options.desktop = true;
      return permission;
    }

    /** The topics this tab follows (the poll may follow more: those of the other tabs). */
    get topics() {
      return this._topics.slice();
    }

    /** Follow a topic too: its messages come as notify:topic events, in the same one poll. */
    follow(topic) {
      checkTopic(topic);
      if (!this._topics.includes(topic)) {
        this._topics.push(topic);
        this._topicsChanged();
      }
      return this;
    }

    /** Stop following a topic (its cursor stays stored: following it again resumes). */
    unfollow(topic) {
      const index = this._topics.indexOf(topic);
      if (index >= 0) {
        this._topics.splice(index, 1);
        this._topicsChanged();
      }
      return this;
    }

    /**
     * Post `data` (an object) to a topic: POST publishUrl with {"data": data}.
     * Resolves to the server's answer, {message, cursor}. The message also comes back
     * through the poll (a notify:topic event) to every tab following the topic, this
     * one included. Rejects with a NotifyError (403 also dispatches notify:forbidden).
     */
    async publish(topic, data) {
      checkTopic(topic);
      if (data === null || typeof data !== "object" || Array.isArray(data)) {
        throw new TypeError("notify: publish() takes a topic and an object, e.g. {text: \"hello\"}");
      }
      const url = this.options.publishUrl.replace("{topic}", encodeURIComponent(topic));
      const response = await fetch(new URL(url, window.location.href), {
        method: "POST",
        headers: this._headers({
          Accept: "application/json",
          "Content-Type": "application/json",
          "X-CSRFToken": this.options.csrfToken || cookie("csrftoken") || "",
        }),
        credentials: "same-origin",
        body: JSON.stringify({ data }),
      });
      let body = {};
      try {
        body = await response.json();
      } catch (e) {
        /* not JSON: reported below by status */
      }
      if (response.status === 401) this._unauthorized(body, false);
      if (response.status === 403 && body.error === "forbidden") {
        this._emit("forbidden", { topic, action: "post", error: body.error, detail: body.detail });
      }
      if (!response.ok) throw new NotifyError(response.status, body.error, body.detail);
      return body;
    }

    /* ---- events ---- */

    _emit(type, detail) {
      this.target.dispatchEvent(new CustomEvent(`notify:${type}`, { detail }));
    }

    _setStatus(status) {
      if (status === this.status) return;
      this.status = status;
      this._emit("status", status);
      if (this.leader) this._post({ type: "status", status });
    }

    _setUnread(count) {
      if (typeof count !== "number" || count === this.unreadCount) return;
      this.unreadCount = count;
      this._emit("unread", count);
    }

    _remember(notifications) {
      for (const n of notifications) this._state.set(n.id, n);
      const extra = this._state.size - this.options.keepState;
      if (extra > 0) {
        const oldest = Array.from(this._state.keys()).sort((a, b) => a - b).slice(0, extra);
        for (const id of oldest) this._state.delete(id);
      }
    }

    _applySync(notifications, unreadCount) {
      this._remember(notifications);
      this._synced = true;
      this._emit("sync", { notifications: this.notifications, unread_count: unreadCount });
      this._setUnread(unreadCount);
    }

    _applyBatch(fresh, unreadCount) {
      this._remember(fresh);
      for (const n of fresh) {
        this._seen.add(n.id);
        this._emit("message", n);
      }
      this._setUnread(unreadCount);
    }

    _applyRead(ids, unreadCount) {
      for (const n of this._state.values()) {
        if (ids === null || ids.includes(n.id)) n.read = true;
      }
      this._emit("read", { ids, unread_count: unreadCount });
      this._setUnread(unreadCount);
    }

    _unauthorized(body, fromLeader) {
      if (!this.running) return;
      if (!fromLeader) this._post({ type: "unauthorized", body });
      this.stop();
      this._emit("unauthorized", body);
    }

    /* ---- tabs ---- */

    _post(message) {
      if (this._channel) this._channel.postMessage(message);
    }

    _receive(message) {
      switch (message.type) {
        case "hello": // a new tab wants the state
          if (this.leader && message.from) this._setPeerTopics(message.from, message.topics);
          if (this.leader && this._synced) {
            this._post({ type: "sync", notifications: this.notifications, unread_count: this.unreadCount, cursor: this.cursor });
            this._post({ type: "status", status: this.status });
          }
          break;
        case "sync":
          if (!this.leader) {
            if (message.cursor) this.cursor = message.cursor;
            this._applySync(message.notifications, message.unread_count);
          }
          break;
        case "batch":
          if (!this.leader) {
            if (message.cursor) this.cursor = message.cursor;
            const fresh = message.notifications.filter((n) => !this._seen.has(n.id));
            this._applyBatch(fresh, message.unread_count);
          }
          break;
        case "status":
          if (!this.leader) this._setStatus(message.status);
          break;
        case "read":
          this._applyRead(message.ids, message.unread_count);
          break;
        case "unauthorized":
          this._unauthorized(message.body, true);
          break;
        case "rollcall": // a new leader asks which topics the tabs follow
          if (!this.leader) this._post({ type: "topics", from: this._id, topics: this._topics });
          break;
        case "topics":
          if (this.leader) this._setPeerTopics(message.from, message.topics);
          break;
        case "leave":
          if (this.leader) this._setPeerTopics(message.from, []);
          break;
        case "topic-batch":
          if (!this.leader) {
            if (typeof message.cursor === "string") this._topicCursors.set(message.topic, message.cursor);
            this._announceTopic(message.topic, message.messages, message.snapshot);
          }
          break;
        case "gap":
          if (!this.leader) {
            if (typeof message.oldest_cursor === "string") this._topicCursors.set(message.topic, message.oldest_cursor);
            if (this._topics.includes(message.topic)) this._emit("gap", { topic: message.topic, oldest_cursor: message.oldest_cursor });
          }
          break;
        case "forbidden":
          if (!this.leader) this._refuseTopic(message.topic, message.body);
          break;
        case "heartbeat":
        case "claim":
        case "bye":
          if (this._election) this._election(message);
          break;
        default:
      }
    }

    _elect() {
      if (navigator.locks && typeof navigator.locks.request === "function") {
        // The browser keeps the lock until the leading tab ends or releases it,
        // then grants it to the next tab waiting: takeover is immediate.
        navigator.locks
          .request(`${this._key}:poller`, { signal: this._stop.signal }, () => this._lead())
          .catch((error) => {
            if (error.name !== "AbortError") console.error("notify: lock failed", error);
          });
      } else if (this._channel) {
        this._electOverChannel();
      } else {
        this._leadLogged(); // no way to coordinate: every tab polls
      }
    }

    // Without Web Locks: the leader sends a heartbeat every second; a tab that hears
    // none for a while (or hears "bye") claims leadership, and the lowest id wins a tie.
    _electOverChannel() {
      let lastBeat = 0;
      let claiming = null;
      const claim = () => {
        if (claiming || this.leader || !this.running) return;
        this._post({ type: "claim", from: this._id });
        claiming = setTimeout(() => {
          claiming = null;
          if (this.running && !this.leader && Date.now() - lastBeat > CLAIM_WAIT_MS) this._leadLogged();
        }, CLAIM_WAIT_MS);
      };
      const cancelClaim = () => {
        clearTimeout(claiming);
        claiming = null;
      };
      this._election = (message) => {
        if (message.from === this._id) return;
        if (message.type === "heartbeat") {
          if (this.leader) {
            if (message.from < this._id) {
              this._stepDown(); // two leaders: the lower id stays
              lastBeat = Date.now();
            }
            return;
          }
          lastBeat = Date.now();
          cancelClaim();
        } else if (message.type === "claim") {
          if (this.leader) this._post({ type: "heartbeat", from: this._id });
          else if (claiming && message.from < this._id) cancelClaim();
        } else if (message.type === "bye") {
          lastBeat = 0;
          cancelClaim();
          setTimeout(claim, Math.random() * 50); // spread the claims of the tabs left
        }
      };
      this._electionTimer = setInterval(() => {
        if (this.leader) this._post({ type: "heartbeat", from: this._id });
        else if (Date.now() - lastBeat > LEADER_SILENT_MS) claim();
      }, HEARTBEAT_MS);
      claim();
    }

    _leadLogged() {
      this._lead().catch((error) => console.error("notify: poll loop failed", error));
    }

    _stepDown() {
      this.leader = false;
      this._wakeUp();
      if (this._current) this._current.abort();
    }

    /* ---- the poll loop (leader only) ---- */

    async _lead() {
      if (!this.running) return;
      this.leader = true;
      this._loadSeen();
      // The other tabs say which topics they follow; answers that add one restart the poll.
      this._peers = new Map();
      this._post({ type: "rollcall" });
      if (this.cursor === null) this.cursor = storage.get(`${this._key}:cursor`);
      // A tab that followed another already has the list; a new one asks for it first.
      let resumeFrom = this._synced ? null : this.cursor;
      if (!this._synced) this.cursor = null;
      let attempt = 0;
      let cuts = [];
      let successes = 0;
      // After a failure the first poll asks for timeout=0: its answer says at once
      // whether the server is back (a held poll would say so only when it ends).
      let check = false;
      let refused = false; // a cursor was refused as invalid since the last held poll
      const expired = new Set(); // "<topic>:<oldest_cursor>" of 410 answers since the last held poll
      while (this.running && this.leader) {
        if (navigator.onLine === false) {
          this._setStatus("offline");
          await this._sleep(null); // until the online event
          check = true;
          continue;
        }
        const snapshot = this.cursor === null;
        // Topics followed by this tab or another: with none, the inbox-only poll.
        const topics = this._pollTopics();
        const multi = topics.length > 0;
        const fresh = topics.filter((topic) => this._topicCursor(topic) === null); // their snapshot first
        const timeout = snapshot || fresh.length || check ? 0 : this._timeout;
        let params;
        if (!multi) {
          params = snapshot ? {} : { after: this.cursor, timeout };
        } else {
          // A stream without a cursor in `after` gets its snapshot, and the poll is answered at once.
          const after = topics.filter((topic) => !fresh.includes(topic)).map((topic) => `${topic}:${this._topicCursor(topic)}`);
          if (!snapshot) after.unshift(`inbox:${this.cursor}`);
          params = { streams: ["inbox", ...topics].join(",") };
          if (after.length) params.after = after.join(",");
          if (!snapshot && !fresh.length) params.timeout = timeout;
        }
        this._restarting = false;
        this._held = timeout > 0;
        this._polling = topics.join(",");
        const started = performance.now();
        let reply;
        try {
          reply = await this._get(params, timeout);
        } catch (error) {
          if (!this.running || !this.leader) break;
          reply = { status: 0, error };
        }
        const elapsed = performance.now() - started;
        if (multi && reply.status === 200 && !(reply.body && reply.body.streams && reply.body.streams.inbox)) {
          reply = { status: 0, error: new Error("not a multi-stream answer") };
        }
        if (this._restarting && reply.status !== 200) continue; // aborted to follow other topics

        if (reply.status === 200 && reply.body) {
          this._setStatus("connected");
          check = false;
          const inbox = multi ? reply.body.streams.inbox : reply.body;
          if (snapshot) {
            this._handleSnapshot(inbox, resumeFrom);
            resumeFrom = null;
          } else {
            this._handleBatch(inbox);
          }
          for (const topic of multi ? topics : []) {
            const page = reply.body.streams[topic];
            if (page) this._handleTopicPage(topic, page, fresh.includes(topic));
          }
          if (timeout > 0) {
            // Only a held poll that lasted proves that long polls get through.
            attempt = 0;
            cuts = [];
            refused = false;
            expired.clear();
            if (timeout < this.options.timeout && ++successes >= SUCCESSES_BEFORE_PROBING) {
              // The limit we adapted to may be gone: try longer polls again.
              successes = 0;
              this._timeout = Math.min(Number(this.options.timeout), Math.round(timeout * 15) / 10);
            }
          }
          continue;
        }
        if (reply.status === 401) {
          this._unauthorized(reply.body || { error: "not_authenticated" }, false);
          break;
        }
        // A multi-stream poll fails whole when one stream refuses; the body names it.
        const stream = multi && reply.body && reply.body.stream !== "inbox" ? reply.body.stream : null;
        if (stream && topics.includes(stream) && reply.status === 403 && reply.body.error === "forbidden") {
          for (const peer of this._peers.values()) peer.delete(stream);
          this._refuseTopic(stream, reply.body);
          this._post({ type: "forbidden", topic: stream, body: reply.body });
          continue; // at once, without it
        }
        const oldest = reply.body && reply.body.oldest_cursor != null ? String(reply.body.oldest_cursor) : null;
        if (stream && topics.includes(stream) && reply.status === 410 && oldest && !expired.has(`${stream}:${oldest}`)) {
          // Retention passed our cursor: go on from the oldest message still kept, and say so.
          expired.add(`${stream}:${oldest}`); // the same answer twice waits like an error
          this._setTopicCursor(stream, oldest);
          if (this._topics.includes(stream)) this._emit("gap", { topic: stream, oldest_cursor: oldest });
          this._post({ type: "gap", topic: stream, oldest_cursor: oldest });
          continue;
        }
        if (reply.status === 400 && reply.body && reply.body.error === "invalid_cursor") {
          // The stored cursor is not ours to use (another user, a reset database): start
          // afresh, at once the first time; a fresh cursor refused too waits like an error.
          if (stream && topics.includes(stream)) {
            this._setTopicCursor(stream, null);
          } else {
            storage.set(`${this._key}:cursor`, null);
            this.cursor = null;
            resumeFrom = null;
            // Without a stream named, the compound cursor as a whole was refused.
            if (multi && !reply.body.stream) for (const topic of topics) this._setTopicCursor(topic, null);
          }
          if (!refused) {
            refused = true;
            continue;
          }
        }
        if (!this.running || !this.leader) break;
        check = true;
        if (navigator.onLine === false) continue; // the offline branch waits

        const cutLike = reply.status === 0 || reply.status === 502 || reply.status === 504;
        if (cutLike && !snapshot && elapsed >= CUT_MIN_MS && elapsed < timeout * 900) {
          cuts.push(elapsed);
          if (cuts.length >= CUTS_BEFORE_LOWERING) {
            // Ask for less than what survives in between, and keep working behind it.
            const lowered = (0.8 * Math.min(...cuts)) / 1000;
            this._timeout = Math.max(this.options.minTimeout, Math.round(lowered * 10) / 10);
            successes = 0;
            cuts = [];
            console.info(`notify: polls are cut after ~${Math.round(elapsed / 100) / 10} s; asking for ${this._timeout} s`);
          }
        } else {
          cuts = [];
        }
        this._setStatus("reconnecting");
        const ceiling = Math.min(this.options.backoffMax, this.options.backoffBase * 2 ** attempt);
        attempt = Math.min(attempt + 1, 30);
        let delay = Math.random() * ceiling; // full jitter
        const retryAfter = Number(reply.headers && reply.headers.get("Retry-After"));
        if (retryAfter > 0) delay = Math.max(delay, retryAfter * 1000 + Math.random() * 1000);
        await this._sleep(delay);
      }
      this.leader = false;
    }

    _handleSnapshot(page, resumeFrom) {
      if (resumeFrom) {
        // Reloaded: the list is now, but what arrived since the stored cursor may
        // not all be unread any more. Poll from there; _seen keeps out repeats.
        this.cursor = resumeFrom;
      } else {
        this.cursor = page.cursor;
        // A first visit: what is unread is listed, not announced as new.
        for (const n of page.notifications) this._seen.add(n.id);
        this._saveSeen();
        storage.set(`${this._key}:cursor`, this.cursor);
      }
      this._applySync(page.notifications, page.unread_count);
      this._post({ type: "sync", notifications: this.notifications, unread_count: page.unread_count, cursor: this.cursor });
    }

    /* ---- topics ---- */

    // The leader polls the union of the topics every open tab follows: a chat tab and
    // an inbox tab still make one poll, and the chat tab gets its room over the channel.
    // (The simpler "only the leader's own topics" would leave a follower tab's room
    // unpolled whenever the leader is a tab without it.) Tabs say which topics they
    // follow in their hello, when it changes, and when a new leader calls the roll; a
    // tab that closes says so (leave). One that crashes leaves its topics polled until
    // the next leader's roll call: a little wasted work, never a missed message.
    _pollTopics() {
      const union = this._topics.slice();
      for (const topics of this._peers.values()) {
        for (const topic of topics) if (!union.includes(topic)) union.push(topic);
      }
      if (union.length > MAX_TOPICS) {
        if (!this._warnedTooMany) console.warn(`notify: one poll follows at most ${MAX_TOPICS} topics; ignoring ${union.slice(MAX_TOPICS).join(", ")}`);
        this._warnedTooMany = true;
        union.length = MAX_TOPICS;
      }
      return union;
    }

    _setPeerTopics(from, topics) {
      if (!from || from === this._id) return;
      const previous = this._peers.get(from) || new Set();
      const wanted = new Set(Array.isArray(topics) ? topics.filter((t) => typeof t === "string" && TOPIC_NAME.test(t) && t !== "inbox") : []);
      if (wanted.size) this._peers.set(from, wanted);
      else this._peers.delete(from);
      // A tab that joins a topic already polled gets what this tab keeps of it.
      for (const topic of wanted) {
        const recent = this._topicRecent && this._topicRecent.get(topic);
        if (!previous.has(topic) && recent && recent.length) {
          this._post({ type: "topic-batch", topic, messages: recent, cursor: this._topicCursor(topic), snapshot: true });
        }
      }
      this._restart();
    }

    _topicsChanged() {
      if (!this.running) return;
      if (this.leader) {
        for (const topic of this._topics) {
          const recent = this._topicRecent && this._topicRecent.get(topic);
          if (recent) this._announceTopic(topic, recent, true); // polled already for another tab
        }
        this._restart();
      } else {
        this._post({ type: "topics", from: this._id, topics: this._topics });
      }
    }

    // Poll again at once with the streams now wanted: a held poll is aborted (a poll
    // answered at once, or a backoff, picks them up when it ends).
    _restart() {
      if (!this.leader || !this._held || !this._current || this._pollTopics().join(",") === this._polling) return;
      this._restarting = true;
      this._current.abort();
    }

    _topicCursor(topic) {
      if (this._topicCursors.has(topic)) return this._topicCursors.get(topic);
      const stored = storage.get(`${this._key}:topic:${topic}`);
      // Opaque, but a comma or a blank would break the compound cursor: forget it.
      return stored && /^[^,\s]+$/.test(stored) ? stored : null;
    }

    _setTopicCursor(topic, cursor) {
      if (cursor === null) this._topicCursors.delete(topic);
      else this._topicCursors.set(topic, cursor);
      storage.set(`${this._key}:topic:${topic}`, cursor);
    }

    _handleTopicPage(topic, page, snapshot) {
      const messages = Array.isArray(page.messages) ? page.messages : [];
      this._setTopicCursor(topic, String(page.cursor));
      if (!this._topicRecent) this._topicRecent = new Map();
      if (messages.length) {
        const recent = (this._topicRecent.get(topic) || []).concat(messages);
        this._topicRecent.set(topic, recent.slice(-50));
      }
      this._announceTopic(topic, messages, snapshot);
      if (messages.length || snapshot) {
        this._post({ type: "topic-batch", topic, messages, cursor: String(page.cursor), snapshot });
      }
    }

    _announceTopic(topic, messages, snapshot) {
      if (!this._topics.includes(topic)) return;
      for (const message of messages) {
        if (this._topicSeen.has(message.id)) continue;
        this._topicSeen.add(message.id);
        this._emit("topic", { topic, message, snapshot: Boolean(snapshot) });
      }
      const extra = this._topicSeen.size - this.options.keepSeen;
      if (extra > 0) {
        const oldest = Array.from(this._topicSeen).slice(0, extra);
        for (const id of oldest) this._topicSeen.delete(id);
      }
    }

    _refuseTopic(topic, body) {
      const index = this._topics.indexOf(topic);
      if (index < 0) return;
      this._topics.splice(index, 1);
      this._emit("forbidden", { topic, action: "read", error: body && body.error, detail: body && body.detail });
    }

    _handleBatch(page) {
      this._loadSeen(); // another leader before us may have announced some
      const fresh = page.notifications.filter((n) => !this._seen.has(n.id));
      this.cursor = page.cursor;
      this._applyBatch(fresh, page.unread_count);
      this._saveSeen();
      storage.set(`${this._key}:cursor`, this.cursor);
      this._post({ type: "batch", notifications: fresh, unread_count: page.unread_count, cursor: this.cursor });
      this._showDesktop(fresh);
    }

    async _get(params, timeout) {
      const url = new URL(this.options.pollUrl, window.location.href);
      for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
      if (this.options.limit) url.searchParams.set("limit", this.options.limit);
      const controller = new AbortController();
      this._current = controller;
      const stall = setTimeout(() => controller.abort(), timeout * 1000 + STALL_GRACE_MS);
      try {
        const response = await fetch(url, {
          headers: this._headers({ Accept: "application/json" }),
          credentials: "same-origin",
          cache: "no-store",
          signal: controller.signal,
        });
        let body = null;
        try {
          body = await response.json();
        } catch (e) {
          if (controller.signal.aborted) throw e;
          body = null; // a proxy's HTML error page
        }
        return { status: response.status, headers: response.headers, body };
      } finally {
        clearTimeout(stall);
        if (this._current === controller) this._current = null;
      }
    }

    async _read(payload) {
      const response = await fetch(new URL(this.options.readUrl, window.location.href), {
        method: "POST",
        headers: this._headers({
          Accept: "application/json",
          "Content-Type": "application/json",
          "X-CSRFToken": this.options.csrfToken || cookie("csrftoken") || "",
        }),
        credentials: "same-origin",
        body: JSON.stringify(payload),
        keepalive: true, // survives following the notification's link
      });
      let body = {};
      try {
        body = await response.json();
      } catch (e) {
        /* not JSON: reported below by status */
      }
      if (response.status === 401) this._unauthorized(body, false);
      if (!response.ok) throw new NotifyError(response.status, body.error, body.detail);
      const ids = payload.all ? null : payload.ids;
      this._applyRead(ids, body.unread_count);
      this._post({ type: "read", ids, unread_count: body.unread_count });
      return body.unread_count;
    }

    _headers(headers) {
      if (this.options.token) headers.Authorization = `Bearer ${this.options.token}`;
      return headers;
    }

    // Resolves after `ms` (or at the next online event if null), or at once on stop.
    _sleep(ms) {
      return new Promise((resolve) => {
        const timer = ms === null ? null : setTimeout(done, ms);
        const self = this;
        function done() {
          clearTimeout(timer);
          if (self._wake === done) self._wake = null;
          resolve();
        }
        this._wake = done;
      });
    }

    _wakeUp() {
      if (this._wake) this._wake();
    }

    _loadSeen() {
      const stored = storage.get(`${this._key}:seen`);
      if (!stored) return;
      try {
        for (const id of JSON.parse(stored)) this._seen.add(id);
      } catch (e) {
        /* corrupt: forget it */
      }
    }

    _saveSeen() {
      const ids = Array.from(this._seen).sort((a, b) => a - b).slice(-this.options.keepSeen);
      this._seen = new Set(ids);
      storage.set(`${this._key}:seen`, JSON.stringify(ids));
    }

    _showDesktop(fresh) {
      if (!this.options.desktop || !fresh.length || typeof Notification !== "function") return;
      if (Notification.permission !== "granted" || document.visibilityState === "visible") return;
      const shown = fresh.length > 3 ? [{ id: "many", title: `${fresh.length} new notifications`, body: "" }] : fresh;
      for (const n of shown) {
        try {
          const popup = new Notification(n.title, { body: n.body || "", tag: `notify-${n.id}` });
          popup.onclick = () => {
            window.focus();
            if (n.url && safeUrl(n.url)) window.location.href = safeUrl(n.url);
            popup.close();
          };
        } catch (e) {
          return; // e.g. Android Chrome wants a service worker for this
        }
      }
    }
  }

  /** The URL if it is http(s) or relative, else null: never a javascript: link. */
  function safeUrl(url) {
    if (!url) return null;
    try {
      const parsed = new URL(url, window.location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function optionsFromScript(script) {
    const data = script.dataset;
    const options = { pollUrl: data.notifyPollUrl, readUrl: data.notifyReadUrl };
    if (data.notifyTimeout) options.timeout = Number(data.notifyTimeout);
    if (data.notifyLimit) options.limit = Number(data.notifyLimit);
    if (data.notifyUser) options.user = data.notifyUser;
    if (data.notifyCsrf) options.csrfToken = data.notifyCsrf;
    if (data.notifyDesktop !== undefined) options.desktop = data.notifyDesktop !== "false";
    if (data.notifyTopics) options.topics = data.notifyTopics.split(/\s+/).filter(Boolean);
    if (data.notifyPublishUrl) options.publishUrl = data.notifyPublishUrl;
    return options;
  }

  Notify.NotifyClient = NotifyClient;
  Notify.NotifyError = NotifyError;
  Notify.safeUrl = safeUrl;

  // {% notify_client %}: configure from the tag's data attributes and start once the
  // page's own scripts have added their listeners.
  const script = document.currentScript || document.querySelector("script[data-notify-poll-url]");
  if (script && script.dataset.notifyPollUrl) {
    Notify.client = new NotifyClient(optionsFromScript(script));
    if (Notify.bindBells) Notify.bindBells(); // notify-bell.js ran first
    if (script.dataset.notifyAutostart !== "false") {
      if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", () => Notify.client.start(), { once: true });
      } else {
        Notify.client.start();
      }
    }
  }
})();
