import assert from "node:assert/strict";
import { test } from "node:test";

import { CursorStore } from "../../notify/static/notify/lib/store.js";
import { FakeStorage } from "./fakes.js";

test("the cursor is kept per user", () => {
  const storage = new FakeStorage();
  const alice = new CursorStore(() => storage, "1");
  const bob = new CursorStore(() => storage, "2");
  alice.cursor = "41";
  assert.equal(alice.cursor, "41");
  assert.equal(bob.cursor, null);
  assert.equal(storage.getItem("notify:1:cursor"), "41");
  alice.cursor = null;
  assert.equal(storage.getItem("notify:1:cursor"), null);
});

test("the ids announced are kept, newest `keep`, and read back into a set", () => {
  const storage = new FakeStorage();
  const store = new CursorStore(() => storage, "1");
  const kept = store.saveSeen(new Set([5, 1, 3, 4, 2]), 3);
  assert.deepEqual([...kept], [3, 4, 5]);
  assert.deepEqual([...store.loadSeen(new Set([9]))].sort(), [3, 4, 5, 9]);
  storage.setItem("notify:1:seen", "{not json");
  assert.deepEqual([...store.loadSeen(new Set())], [], "a corrupt list is forgotten");
});

test("a topic cursor with a comma or a blank is not used", () => {
  const storage = new FakeStorage();
  const store = new CursorStore(() => storage, "1");
  store.setTopicCursor("room:1", "17");
  assert.equal(store.topicCursor("room:1"), "17");
  for (const bad of ["1,2", "1 2", ""]) {
    storage.setItem("notify:1:topic:room:1", bad);
    assert.equal(store.topicCursor("room:1"), null, JSON.stringify(bad));
  }
});

test("without storage (disabled, or throwing) nothing fails and nothing is kept", () => {
  const throwing = {
    getItem() {
      throw new Error("SecurityError");
    },
    setItem() {
      throw new Error("QuotaExceededError");
    },
    removeItem() {
      throw new Error("SecurityError");
    },
  };
  for (const storage of [() => null, () => throwing]) {
    const store = new CursorStore(storage, "1");
    store.cursor = "5";
    store.cursor = null;
    assert.equal(store.cursor, null);
    assert.deepEqual([...store.saveSeen(new Set([1]), 10)], [1]);
  }
});
