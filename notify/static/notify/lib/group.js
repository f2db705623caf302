/**
 * Grouping's client rule (docs/grouping.md): a notification with a `group` replaces every
 * earlier one of the same group — same kind, key and first_id — that a list still shows.
 * The server deleted those when it sent this one; an earlier group of the same key (one
 * read, or left unread past the server's window) has another first_id and stays.
 */

/** The identity of `n`'s group as a string, or null if it has none. */
export function groupKey(n) {
  const group = n && n.group;
  if (!group || typeof group !== "object") return null;
  return JSON.stringify([n.kind || "", String(group.key), Number(group.first_id)]);
}

/**
 * How `n` stands against `other` by the rule: "replaces" (same group, `other` earlier),
 * "replaced" (same group, `other` newer: `n` is stale) or null (unrelated, or the same id).
 */
export function compareGroup(n, other) {
  const key = groupKey(n);
  if (key === null || n.id === other.id || key !== groupKey(other)) return null;
  return other.id < n.id ? "replaces" : "replaced";
}
