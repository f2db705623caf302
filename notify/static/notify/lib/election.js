/**
 * Which tab of a browser polls (the leader): the one holding the Web Lock
 * `notify:<user>:poller`; where Web Locks are missing, an election over the
 * BroadcastChannel; with neither, every tab polls for itself.
 */

// Election over BroadcastChannel.
export const HEARTBEAT_MS = 1000;
export const LEADER_SILENT_MS = 3000;
export const CLAIM_WAIT_MS = 250;

export class Election {
  /**
   * `host` is the client: `host.lead()` runs the poll loop and resolves when this tab
   * stops leading; `host.stepDown()` ends it; `host.leader`, `host.running` are read.
   */
  constructor(host, env, channel, lockName) {
    this.host = host;
    this.env = env;
    this.channel = channel;
    this.lockName = lockName;
    this._receive = null;
    this._timer = null;
  }

  start(signal) {
    const locks = this.env.locks();
    if (locks) {
      // The browser keeps the lock until the leading tab ends or releases it, then
      // grants it to the next tab waiting: takeover is immediate.
      locks.request(this.lockName, { signal }, () => this.host.lead()).catch((error) => {
        if (error && error.name !== "AbortError") console.error("notify: lock failed", error);
      });
    } else if (this.channel.open) {
      this._overChannel();
    } else {
      this._lead(); // no way to coordinate: every tab polls
    }
  }

  stop() {
    if (this._timer !== null) this.env.clearInterval(this._timer);
    this._timer = null;
  }

  /** Election messages (heartbeat, claim, bye) of the other tabs. */
  receive(message) {
    if (this._receive && message.from !== this.channel.id) this._receive(message);
  }

  _lead() {
    this.host.lead().catch((error) => console.error("notify: poll loop failed", error));
  }

  // The leader sends a heartbeat every second; a tab that hears none for a while (or
  // hears "bye") claims leadership, and the lowest id wins a tie.
  _overChannel() {
    const { env, host, channel } = this;
    let lastBeat = -Infinity;
    let claiming = null;
    const claim = () => {
      if (claiming !== null || host.leader || !host.running) return;
      channel.post({ type: "claim" });
      claiming = env.setTimeout(() => {
        claiming = null;
        if (host.running && !host.leader && env.now() - lastBeat > CLAIM_WAIT_MS) {
          // Said at once: a tab that claimed after this one and has not heard it yet
          // (it opened after this claim, e.g. a reloaded tab) backs off now, instead of
          // polling too until the next heartbeat.
          channel.post({ type: "heartbeat" });
          this._lead();
        }
      }, CLAIM_WAIT_MS);
    };
    const cancelClaim = () => {
      env.clearTimeout(claiming);
      claiming = null;
    };
    this._receive = (message) => {
      if (message.type === "heartbeat") {
        if (host.leader) {
          if (message.from < channel.id) {
            host.stepDown(); // two leaders: the lower id stays
            lastBeat = env.now();
          }
          return;
        }
        lastBeat = env.now();
        cancelClaim();
      } else if (message.type === "claim") {
        if (host.leader) channel.post({ type: "heartbeat" });
        else if (claiming !== null && message.from < channel.id) cancelClaim();
      } else if (message.type === "bye") {
        lastBeat = -Infinity;
        cancelClaim();
        env.setTimeout(claim, env.random() * 50); // spread the claims of the tabs left
      }
    };
    this._timer = env.setInterval(() => {
      if (host.leader) channel.post({ type: "heartbeat" });
      else if (env.now() - lastBeat > LEADER_SILENT_MS) claim();
    }, HEARTBEAT_MS);
    claim();
  }
}
