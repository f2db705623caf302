import { compareGroup } from "./group.js";

/** The inbox as this tab knows it: the newest notifications, the ids announced, the unread count. */
export class Inbox {
  constructor(keepState) {
    this.keepState = keepState;
    this.unreadCount = null;
    this.synced = false; // got the unread list (from the server or the polling tab)
    this.seen = new Set(); // ids announced as notify:message
    this._state = new Map(); // id -> notification
  }

  /** Newest first. */
  get notifications() {
    return Array.from(this._state.values()).sort((a, b) => b.id - a.id);
  }

  remember(notifications) {
    for (const n of notifications) {
      if (n.group && !this._supersede(n)) continue; // a newer one of its group is known
      this._state.set(n.id, n);
    }
    const extra = this._state.size - this.keepState;
    if (extra > 0) {
      const oldest = Array.from(this._state.keys())
        .sort((a, b) => a - b)
        .slice(0, extra);
      for (const id of oldest) this._state.delete(id);
    }
  }

  /** Grouping's rule (group.js): drop what `n` replaces; false if `n` is itself replaced. */
  _supersede(n) {
    for (const other of Array.from(this._state.values())) {
      const relation = compareGroup(n, other);
      if (relation === "replaced") return false;
      if (relation === "replaces") this._state.delete(other.id);
    }
    return true;
  }

  /** Those of `notifications` not announced yet. */
  fresh(notifications) {
    return notifications.filter((n) => !this.seen.has(n.id));
  }

  /** Listed, not announced (a first visit's unread list). */
  markSeen(notifications) {
    for (const n of notifications) this.seen.add(n.id);
  }

  markRead(ids) {
    for (const n of this._state.values()) if (ids === null || ids.includes(n.id)) n.read = true;
  }

  /** True if `count` is a new unread count. */
  setUnread(count) {
    if (typeof count !== "number" || count === this.unreadCount) return false;
    this.unreadCount = count;
    return true;
  }
}
