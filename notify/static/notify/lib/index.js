/*
 * The notify browser client as an ES module, without side effects: what a bundler
 * project gets from the package (package.json "exports"), or a page from this path.
 * The page script of {% notify_client %} is ../notify.js, which adds `window.Notify`.
 *
 * Re-exported in two steps on purpose, and no prose here that reads like a statement:
 * Django's manifest storage rewrites the paths of both kinds of statement with a
 * pattern each, and text that one pattern takes for the start of a statement can make
 * both rewrite one path, hashing it twice (tests/js/test_collectstatic.py).
 */
import { Bell } from "./bell.js";
import { NotifyClient } from "./client.js";
import { compareGroup, groupKey } from "./group.js";
import { NotifyError } from "./http.js";
import { DEFAULTS, checkTopic } from "./options.js";
import { STATUSES, transition } from "./status.js";
import { safeUrl } from "./url.js";

export {
  Bell,
  DEFAULTS,
  NotifyClient,
  NotifyError,
  STATUSES,
  checkTopic,
  compareGroup,
  groupKey,
  safeUrl,
  transition,
};
