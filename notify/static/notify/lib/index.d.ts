// Types of the notify browser client (hand-written; the source is plain ES modules).
// docs/js-client.md is the reference.

/** A notification of the user's inbox, as the server lists it. */
export interface Notification {
  id: number;
  title: string;
  body: string;
  url: string;
  level: "info" | "success" | "warning" | "error" | string;
  /** What it is about, set by the sender ("billing.invoice"); "" for none. Absent from servers before it existed. */
  kind?: string;
  read: boolean;
  created_at: string;
  /** Grouping (docs/grouping.md): null for none. Absent from servers before it existed. */
  group?: NotificationGroup | null;
  [field: string]: unknown;
}

/** What a grouped notification stands for: `count` sends of its kind about `key`, the newest `actors` first. */
export interface NotificationGroup {
  key: string;
  count: number;
  actors: string[];
  /** The id its group started with: the same for every notification of one group (the client rule). */
  first_id: number;
}

/** A message of a topic stream. */
export interface TopicMessage {
  id: number;
  topic: string;
  data: Record<string, unknown>;
  sender: { id: number; username: string } | null;
  created_at: string;
  [field: string]: unknown;
}

export type Status = "stopped" | "connecting" | "connected" | "reconnecting" | "offline";

/** What happens to the connection (status.js); "shared" adopts the polling tab's status. */
export type StatusEvent = "start" | "answered" | "failed" | "offline" | "online" | "unauthorized" | "stop" | "handover" | "shared";

/** Stand-ins for the browser's parts (tests, or a page that wraps fetch); any may be given. */
export interface Env {
  fetch(url: URL, init: RequestInit): Promise<Response>;
  storage(): Pick<Storage, "getItem" | "setItem" | "removeItem"> | null;
  channel(name: string): Pick<BroadcastChannel, "postMessage" | "close" | "onmessage"> | null;
  locks(): Pick<LockManager, "request"> | null;
  online(): boolean;
  cookies(): string;
  baseUrl(): string;
  target(): EventTarget;
  Notification(): typeof globalThis.Notification | null;
  visible(): boolean;
  focus(): void;
  navigate(url: string): void;
  listen(type: string, handler: (event: Event) => void): () => void;
  now(): number;
  random(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(id: unknown): void;
}

export interface Options {
  /**
   * Where Django is when the page is on another origin (a single-page app), e.g.
   * "https://api.example.com" or "https://example.com/app": the URLs below go under it
   * (joined as a prefix) unless absolute. Default null: relative to the page.
   */
  baseUrl: string | null;
  /** GET URL of the poll. Default "/notify/poll". */
  pollUrl: string;
  /** POST URL of read marks. Default "/notify/read". */
  readUrl: string;
  /** POST URL of publish(); "{topic}" is replaced by the encoded name. */
  publishUrl: string;
  /** GET URL of presence(); "{topic}" is replaced by the encoded name. Default "/notify/topics/{topic}/presence". */
  presenceUrl: string;
  /** Seconds a poll is held (the server clamps it); lowered by itself behind a proxy that cuts sooner. Default 25. */
  timeout: number;
  /** Notifications per answer; null: the server's default. */
  limit: number | null;
  /** Names the storage keys, the Web Lock and the channel: one stream per user. Default "default". */
  user: string | number;
  /** For POSTs; falls back to the csrftoken cookie (not sent with a token unless given). */
  csrfToken: string | null;
  /** Sent as "Authorization: Bearer <token>" instead of relying on the session cookie; POSTs then need no CSRF token. */
  token: string | null;
  /** Where events are dispatched. Default document. */
  target: EventTarget | null;
  /** Desktop pop-ups while the tab is hidden, once the user allowed them. */
  desktop: boolean;
  /** ms: the first retry waits up to this long (full jitter), doubling... Default 1000. */
  backoffBase: number;
  /** ...up to this cap (ms). Default 30000. */
  backoffMax: number;
  /** Seconds: never ask for less when adapting to a proxy. Default 1. */
  minTimeout: number;
  /** Ids remembered as announced, per user. Default 500. */
  keepSeen: number;
  /** Notifications kept in memory for late tabs and widgets. Default 100. */
  keepState: number;
  /** Topic streams followed besides the inbox, in the same poll. */
  topics: string[];
  /** Stand-ins for the browser's parts. */
  env: Partial<Env> | null;
}

export interface EventDetails {
  "notify:message": Notification;
  "notify:sync": { notifications: Notification[]; unread_count: number };
  "notify:unread": number;
  "notify:read": { ids: number[] | null; unread_count: number };
  "notify:status": Status;
  "notify:unauthorized": { error: string; detail?: string };
  "notify:topic": { topic: string; message: TopicMessage; snapshot: boolean };
  "notify:gap": { topic: string; oldest_cursor: string };
  "notify:forbidden": { topic: string; action: "read" | "post"; error: string; detail?: string };
  "notify:presence": PresenceEvent;
}

/** A user who follows a topic. */
export interface PresentUser {
  id: number;
  /** null in an event of a user deleted since. */
  username: string | null;
}

/** What presence() resolves to (GET /notify/topics/<name>/presence). */
export interface Presence {
  topic: string;
  /** How many users are present (all of them). */
  count: number;
  /** At most the server's MAX_PRESENCE of them, the most recently active, by username. */
  users: PresentUser[];
  /** The stream of its join and leave events ("presence:<topic>"), or null for a name too long. */
  events: string | null;
}

/** A join or a leave on a topic whose presence this tab follows (followPresence). */
export interface PresenceEvent {
  topic: string;
  event: "join" | "leave";
  user: PresentUser;
  /** When, in ms since the epoch on the server's Redis clock: a later event about a user wins. */
  at: number;
  /** Part of the events stream's snapshot (past events, when first followed): not news. */
  snapshot: boolean;
}

export type NotifyEvent<K extends keyof EventDetails> = CustomEvent<EventDetails[K]>;

export declare class NotifyClient {
  constructor(options?: Partial<Options>);
  /** Read live: a change (e.g. backoffMax) takes effect at the next retry. */
  readonly options: Options;
  readonly status: Status;
  readonly unreadCount: number | null;
  /** What is known now, newest first. */
  readonly notifications: Notification[];
  /** The topics this tab follows (the poll may follow more: those of the other tabs). */
  readonly topics: string[];
  /** The poll timeout asked for now, in seconds. */
  readonly requestedTimeout: number;
  readonly target: EventTarget;
  /** The inbox cursor reached (opaque). */
  cursor: string | null;
  /** True in the one tab that polls for the browser. */
  leader: boolean;
  running: boolean;

  start(): this;
  stop(): this;
  /** Resolves to the new unread count. */
  markRead(ids: Iterable<number | string>): Promise<number | null>;
  markAllRead(): Promise<number>;
  /** Call it from a click; resolves to the permission ("unsupported" without the API). */
  enableDesktop(): Promise<NotificationPermission | "unsupported">;
  follow(topic: string): this;
  unfollow(topic: string): this;
  /** Resolves to the server's {message, cursor}; rejects with a NotifyError. */
  publish(topic: string, data: Record<string, unknown>): Promise<{ message: TopicMessage; cursor: string }>;
  /** Who follows the topic now; rejects with a NotifyError (404 "presence_off" when the server has it off). */
  presence(topic: string): Promise<Presence>;
  /** Follow the topic's join and leave events (notify:presence), in the same one poll. */
  followPresence(topic: string): this;
  unfollowPresence(topic: string): this;
  /** Poll for every tab until this one stops or steps down (called by the election). */
  lead(): Promise<void>;
  /** Stop polling: another tab polls (called by the election). */
  stepDown(): void;
}

export declare class NotifyError extends Error {
  constructor(status: number, code?: string, detail?: string);
  readonly name: "NotifyError";
  /** The HTTP status. */
  readonly status: number;
  /** The JSON body's `error`. */
  readonly code: string | undefined;
}

/** The bell of {% notify_bell %} bound to one [data-notify-bell] element. */
export declare class Bell {
  constructor(element: HTMLElement, client: NotifyClient, options?: { maxItems?: number });
}

export declare const DEFAULTS: Readonly<Options>;
export declare const STATUSES: readonly Status[];
/** The status after `event` (status.js). */
export declare function transition(status: Status, event: StatusEvent, shared?: Status): Status;
/** Throws a TypeError unless `name` is a topic name the server accepts. */
export declare function checkTopic(name: string): string;
/** The URL if it is http(s) or relative, else null: never a javascript: link. */
/** Grouping's client rule: the identity of `n`'s group (kind, key, first_id) as a string, or null. */
export declare function groupKey(n: Notification): string | null;
/** "replaces": `n` replaces `other` (same group, earlier); "replaced": `other` is newer; null: unrelated. */
export declare function compareGroup(n: Notification, other: Notification): "replaces" | "replaced" | null;
export declare function safeUrl(url: string | null | undefined, base?: string): string | null;

declare global {
  interface DocumentEventMap {
    "notify:message": NotifyEvent<"notify:message">;
    "notify:sync": NotifyEvent<"notify:sync">;
    "notify:unread": NotifyEvent<"notify:unread">;
    "notify:read": NotifyEvent<"notify:read">;
    "notify:status": NotifyEvent<"notify:status">;
    "notify:unauthorized": NotifyEvent<"notify:unauthorized">;
    "notify:topic": NotifyEvent<"notify:topic">;
    "notify:presence": NotifyEvent<"notify:presence">;
    "notify:gap": NotifyEvent<"notify:gap">;
    "notify:forbidden": NotifyEvent<"notify:forbidden">;
  }
}
