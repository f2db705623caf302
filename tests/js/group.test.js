import assert from "node:assert/strict";
import { test } from "node:test";

import { compareGroup, groupKey } from "../../notify/static/notify/lib/group.js";
import { Inbox } from "../../notify/static/notify/lib/inbox.js";

function grouped(id, count, firstId, { kind = "blog.comment", key = "post:42" } = {}) {
  return { id, kind, title: `${count}`, read: false, group: { key, count, actors: [], first_id: firstId } };
}

test("a grouped notification replaces the earlier ones of its group, and only those", () => {
  assert.equal(compareGroup(grouped(5, 2, 3), grouped(3, 1, 3)), "replaces");
  assert.equal(compareGroup(grouped(3, 1, 3), grouped(5, 2, 3)), "replaced");
  assert.equal(compareGroup(grouped(5, 2, 3), grouped(5, 2, 3)), null, "itself");
  assert.equal(compareGroup(grouped(9, 1, 9), grouped(5, 2, 3)), null, "an earlier group of the same key");
  assert.equal(compareGroup(grouped(5, 2, 3), grouped(3, 1, 3, { kind: "blog.like" })), null, "another kind");
  assert.equal(compareGroup(grouped(5, 2, 3), grouped(3, 1, 3, { key: "post:43" })), null, "another key");
  assert.equal(compareGroup({ id: 5, kind: "k", group: null }, grouped(3, 1, 3)), null, "no group");
  assert.equal(groupKey({ id: 1, kind: "k" }), null, "a server without the field");
});

test("the inbox keeps one notification per group, the newest, whatever order they come in", () => {
  const inbox = new Inbox(50);
  const plain = { id: 4, kind: "blog.comment", title: "plain", read: false, group: null };
  inbox.remember([grouped(1, 1, 1), plain, grouped(6, 2, 1)]);
  assert.deepEqual(
    inbox.notifications.map((n) => n.id),
    [6, 4],
  );
  inbox.remember([grouped(3, 1, 1)]); // stale (a sync that crossed a poll): not listed again
  inbox.remember([grouped(8, 1, 8)]); // the first was read elsewhere: a new group, both listed
  assert.deepEqual(
    inbox.notifications.map((n) => n.id),
    [8, 6, 4],
  );
  inbox.remember([grouped(11, 5, 1)]); // a client offline for several collapses: the latest replaces 6
  assert.deepEqual(
    inbox.notifications.map((n) => [n.id, n.group && n.group.count]),
    [
      [11, 5],
      [8, 1],
      [4, null],
    ],
  );
});
