import assert from "node:assert/strict";
import { test } from "node:test";

import {
  backoffDelay,
  retryAfterMs,
  retryDelay,
  SUCCESSES_BEFORE_PROBING,
  TimeoutAdapter,
} from "../../notify/static/notify/lib/retry.js";

const options = { backoffBase: 1000, backoffMax: 30000 };

test("backoff is full jitter: anywhere from 0 to a ceiling that doubles", () => {
  assert.equal(backoffDelay(0, 1000, 30000, () => 0), 0);
  assert.equal(backoffDelay(0, 1000, 30000, () => 0.999), 999);
  assert.equal(backoffDelay(1, 1000, 30000, () => 0.5), 1000);
  assert.equal(backoffDelay(3, 1000, 30000, () => 0.5), 4000);
});

test("backoff stops doubling at backoffMax", () => {
  assert.equal(backoffDelay(5, 1000, 30000, () => 1), 30000);
  assert.equal(backoffDelay(30, 1000, 30000, () => 1), 30000);
  assert.equal(backoffDelay(30, 1000, 2000, () => 0.5), 1000);
});

test("Retry-After in seconds, spread over one more second", () => {
  assert.equal(retryAfterMs("2", 0, () => 0), 2000);
  assert.equal(retryAfterMs("2", 0, () => 0.5), 2500);
});

test("Retry-After as an HTTP date", () => {
  const now = Date.parse("2026-11-30T12:00:00Z");
  assert.equal(retryAfterMs("Mon, 30 Nov 2026 12:00:03 GMT", now, () => 0), 3000);
  assert.equal(retryAfterMs("Mon, 30 Nov 2026 11:00:00 GMT", now, () => 0), 0, "a date past is no wait");
});

test("no, empty, zero or unreadable Retry-After is no wait", () => {
  for (const value of [null, undefined, "", "0", "-3", "soon"]) assert.equal(retryAfterMs(value, 0, () => 0.5), 0, value);
});

test("the wait is the backoff, but never less than Retry-After", () => {
  assert.equal(retryDelay(0, options, null, () => 0.5), 500);
  assert.equal(retryDelay(0, options, "3", () => 0), 3000);
  assert.equal(retryDelay(6, options, "1", () => 1), 30000);
});

test("two polls cut early in a row lower the timeout to 80% of the shortest cut", () => {
  const adapter = new TimeoutAdapter(25);
  assert.equal(adapter.failed(504, 2100, 25, 1), null);
  assert.equal(adapter.failed(0, 2000, 25, 1), 1.6);
  assert.equal(adapter.timeout, 1.6);
});

test("not cuts: a 503, a fast failure, a failure at the timeout, a check poll", () => {
  const adapter = new TimeoutAdapter(25);
  for (const [status, elapsed, asked] of [
    [503, 2000, 25],
    [0, 900, 25],
    [0, 23000, 25],
    [0, 2000, 0],
  ]) {
    assert.equal(adapter.failed(0, 2000, 25, 1), null); // one cut...
    assert.equal(adapter.failed(status, elapsed, asked, 1), null, `${status} after ${elapsed} ms`); // ...then not one
    assert.equal(adapter.failed(0, 2000, 25, 1), null, "the count started again");
    adapter.answered(25, 25);
  }
  assert.equal(adapter.timeout, 25);
});

test("a held poll answered in between starts the count again", () => {
  const adapter = new TimeoutAdapter(25);
  adapter.failed(502, 5000, 25, 1);
  adapter.answered(25, 25);
  assert.equal(adapter.failed(502, 5000, 25, 1), null);
  assert.equal(adapter.failed(502, 5000, 25, 1), 4);
});

test("the timeout is never lowered below minTimeout", () => {
  const adapter = new TimeoutAdapter(25);
  adapter.failed(0, 1100, 25, 2);
  assert.equal(adapter.failed(0, 1100, 25, 2), 2);
});

test("after 50 held polls at the lowered timeout, it tries half as long again, up to options.timeout", () => {
  const adapter = new TimeoutAdapter(25);
  adapter.failed(0, 10000, 25, 1);
  adapter.failed(0, 10000, 25, 1);
  assert.equal(adapter.timeout, 8);
  for (let i = 1; i < SUCCESSES_BEFORE_PROBING; i += 1) adapter.answered(8, 25);
  assert.equal(adapter.timeout, 8);
  adapter.answered(8, 25);
  assert.equal(adapter.timeout, 12);
  for (let i = 0; i < SUCCESSES_BEFORE_PROBING * 3; i += 1) adapter.answered(adapter.timeout, 25);
  assert.equal(adapter.timeout, 25);
});
