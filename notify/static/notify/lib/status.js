/**
 * The connection status, a state machine shared by the tabs of a browser: the
 * polling tab applies what happens to its polls, the others adopt what it says.
 *
 *   start         stopped                          -> connecting
 *   answered      connecting, reconnecting, offline -> connected   (the server answered a poll)
 *   failed        connecting, connected         -> reconnecting    (a network error, 5xx, a cut)
 *   offline       connecting, connected, reconnecting -> offline   (the browser says so)
 *   online        offline                          -> reconnecting (checking at once)
 *   unauthorized  any but stopped                  -> stopped      (notify:unauthorized too)
 *   stop          any                              -> stopped
 *   shared        any but stopped -> the polling tab's status (not stopped)
 *   handover      unchanged: the polling tab closed or reloaded, another takes over
 *
 * "handover" is a transition of its own so that a reload is never mistaken for an
 * outage: the tab that takes over keeps saying what was true, checks the server at
 * once (a poll with timeout=0) and holds its poll from there.
 */

export const STATUSES = Object.freeze(["stopped", "connecting", "connected", "reconnecting", "offline"]);
const RUNNING = ["connecting", "connected", "reconnecting", "offline"];

const TABLE = {
  start: { stopped: "connecting" },
  answered: { connecting: "connected", reconnecting: "connected", offline: "connected" },
  failed: { connecting: "reconnecting", connected: "reconnecting" },
  offline: { connecting: "offline", connected: "offline", reconnecting: "offline" },
  online: { offline: "reconnecting" },
  unauthorized: { connecting: "stopped", connected: "stopped", reconnecting: "stopped", offline: "stopped" },
  stop: { connecting: "stopped", connected: "stopped", reconnecting: "stopped", offline: "stopped" },
  handover: {},
};

/** The status after `event` (one of TABLE's, or "shared" with the polling tab's `shared` status). */
export function transition(status, event, shared) {
  if (event === "shared") return RUNNING.includes(status) && RUNNING.includes(shared) ? shared : status;
  if (!(event in TABLE)) throw new RangeError(`notify: no status event ${JSON.stringify(event)}`);
  return TABLE[event][status] || status;
}

export class Status {
  /** `onChange(status)` runs on every change, not on events that change nothing. */
  constructor(onChange) {
    this.value = "stopped";
    this._onChange = onChange;
  }

  apply(event, shared) {
    const next = transition(this.value, event, shared);
    if (next !== this.value) {
      this.value = next;
      this._onChange(next);
    }
    return next;
  }
}
