/**
 * What a browser remembers per user in localStorage, so that a reload resumes where
 * it stopped: the inbox cursor (`notify:<user>:cursor`), the ids already announced
 * (`notify:<user>:seen`) and each topic's cursor (`notify:<user>:topic:<name>`).
 * Without storage (disabled, full) the client still works within the page.
 */
export class CursorStore {
  /** `storage()` returns a Storage (localStorage) or null. */
  constructor(storage, user) {
    this._storage = storage;
    this.key = `notify:${user}`;
  }

  get(name) {
    try {
      const storage = this._storage();
      return storage ? storage.getItem(`${this.key}:${name}`) : null;
    } catch {
      return null;
    }
  }

  set(name, value) {
    try {
      const storage = this._storage();
      if (!storage) return;
      if (value === null) storage.removeItem(`${this.key}:${name}`);
      else storage.setItem(`${this.key}:${name}`, value);
    } catch {
      /* full or disabled: the in-memory copy still works */
    }
  }

  get cursor() {
    return this.get("cursor");
  }

  set cursor(value) {
    this.set("cursor", value);
  }

  /** The ids announced by any tab of this browser (added to `seen`). */
  loadSeen(seen) {
    const stored = this.get("seen");
    if (!stored) return seen;
    try {
      for (const id of JSON.parse(stored)) seen.add(id);
    } catch {
      /* corrupt: forget it */
    }
    return seen;
  }

  /** Keeps the newest `keep` of `seen`; the Set kept. */
  saveSeen(seen, keep) {
    const ids = Array.from(seen)
      .sort((a, b) => a - b)
      .slice(-keep);
    this.set("seen", JSON.stringify(ids));
    return new Set(ids);
  }

  topicCursor(topic) {
    const stored = this.get(`topic:${topic}`);
    // Opaque, but a comma or a blank would break the compound cursor: forget it.
    return stored && /^[^,\s]+$/.test(stored) ? stored : null;
  }

  setTopicCursor(topic, cursor) {
    this.set(`topic:${topic}`, cursor);
  }
}
