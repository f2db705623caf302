import assert from "node:assert/strict";
import { test } from "node:test";

import { Status, STATUSES, transition } from "../../notify/static/notify/lib/status.js";

const RUNNING = ["connecting", "connected", "reconnecting", "offline"];

// Every (status, event) pair: what the machine must answer. One row per transition.
const EXPECTED = {
  start: { stopped: "connecting", connecting: "connecting", connected: "connected", reconnecting: "reconnecting", offline: "offline" },
  answered: { stopped: "stopped", connecting: "connected", connected: "connected", reconnecting: "connected", offline: "connected" },
  failed: { stopped: "stopped", connecting: "reconnecting", connected: "reconnecting", reconnecting: "reconnecting", offline: "offline" },
  offline: { stopped: "stopped", connecting: "offline", connected: "offline", reconnecting: "offline", offline: "offline" },
  online: { stopped: "stopped", connecting: "connecting", connected: "connected", reconnecting: "reconnecting", offline: "reconnecting" },
  unauthorized: { stopped: "stopped", connecting: "stopped", connected: "stopped", reconnecting: "stopped", offline: "stopped" },
  stop: { stopped: "stopped", connecting: "stopped", connected: "stopped", reconnecting: "stopped", offline: "stopped" },
  handover: { stopped: "stopped", connecting: "connecting", connected: "connected", reconnecting: "reconnecting", offline: "offline" },
};

for (const [event, table] of Object.entries(EXPECTED)) {
  test(`status transitions on ${event}`, () => {
    for (const status of STATUSES) assert.equal(transition(status, event), table[status], `${status} --${event}-->`);
  });
}

test("a reload of the polling tab (handover) never reads as an outage", () => {
  assert.equal(transition("connected", "handover"), "connected");
});

test("a tab adopts the polling tab's status, unless it is stopped itself", () => {
  for (const status of RUNNING) {
    for (const shared of RUNNING) assert.equal(transition(status, "shared", shared), shared);
    assert.equal(transition(status, "shared", "stopped"), status, "a polling tab that stops says bye instead");
    assert.equal(transition(status, "shared", "nonsense"), status);
  }
  assert.equal(transition("stopped", "shared", "connected"), "stopped");
});

test("an unknown event is a mistake, not a silent no-op", () => {
  assert.throws(() => transition("connected", "answerd"), RangeError);
});

test("Status reports changes only", () => {
  const seen = [];
  const status = new Status((value) => seen.push(value));
  for (const event of ["start", "answered", "answered", "failed", "failed", "answered", "handover", "stop"]) status.apply(event);
  assert.deepEqual(seen, ["connecting", "connected", "reconnecting", "connected", "stopped"]);
});
