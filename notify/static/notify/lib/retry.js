/** When to retry a failed poll, and how long a poll may be held behind a proxy that cuts it. */

// A poll that fails this long after it started, yet well before its timeout,
// was most likely cut by something in between (a proxy's read timeout).
export const CUT_MIN_MS = 1000;
export const CUTS_BEFORE_LOWERING = 2;
export const SUCCESSES_BEFORE_PROBING = 50;
export const MAX_ATTEMPT = 30;

/** Full jitter: anywhere from 0 to min(max, base * 2^attempt) ms. */
export function backoffDelay(attempt, base, max, random) {
  return random() * Math.min(max, base * 2 ** attempt);
}

/** Retry-After (seconds, or an HTTP date) in ms, spread over one more second; 0 without one. */
export function retryAfterMs(value, now, random) {
  if (value === null || value === undefined || value === "") return 0;
  let ms = Number(value) * 1000;
  if (Number.isNaN(ms)) ms = Date.parse(value) - now;
  return ms > 0 ? ms + random() * 1000 : 0;
}

/** The wait before retry number `attempt` (0 first): the backoff, never less than Retry-After. */
export function retryDelay(attempt, options, retryAfter, random, now = Date.now()) {
  return Math.max(backoffDelay(attempt, options.backoffBase, options.backoffMax, random), retryAfterMs(retryAfter, now, random));
}

/**
 * The timeout asked for: options.timeout until polls are cut early twice in a row
 * (a proxy's read timeout), then 80% of the shortest cut; after 50 held polls
 * answered at the lowered timeout, half as long again, in case the limit is gone.
 */
export class TimeoutAdapter {
  constructor(timeout) {
    this.timeout = Number(timeout);
    this._cuts = [];
    this._successes = 0;
  }

  /** A held poll (`asked` seconds) was answered; `wanted` is options.timeout. */
  answered(asked, wanted) {
    this._cuts = [];
    if (asked < wanted && ++this._successes >= SUCCESSES_BEFORE_PROBING) {
      this._successes = 0;
      this.timeout = Math.min(Number(wanted), Math.round(asked * 15) / 10);
    }
  }

  /** A poll that asked for `asked` seconds failed after `elapsed` ms; the lowered timeout, or null. */
  failed(status, elapsed, asked, minTimeout) {
    const cutLike = status === 0 || status === 502 || status === 504;
    if (!cutLike || elapsed < CUT_MIN_MS || elapsed >= asked * 900) {
      this._cuts = [];
      return null;
    }
    this._cuts.push(elapsed);
    if (this._cuts.length < CUTS_BEFORE_LOWERING) return null;
    // Ask for less than what survives in between, and keep working behind it.
    const lowered = (0.8 * Math.min(...this._cuts)) / 1000;
    this.timeout = Math.max(minTimeout, Math.round(lowered * 10) / 10);
    this._successes = 0;
    this._cuts = [];
    return this.timeout;
  }
}
