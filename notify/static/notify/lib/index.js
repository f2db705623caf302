/*
 * The notify browser client as an ES module, without side effects: import it from a
 * bundler (`import { NotifyClient } from "django-notify-client"`) or from a path. The
 * page script of {% notify_client %} is ../notify.js, which adds `window.Notify`.
 */
export { NotifyClient } from "./client.js";
export { NotifyError } from "./http.js";
export { DEFAULTS, checkTopic } from "./options.js";
export { STATUSES, transition } from "./status.js";
export { safeUrl } from "./url.js";
export { Bell } from "./bell.js";
