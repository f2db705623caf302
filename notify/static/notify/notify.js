/*
 * notify.js: the page script of {% notify_client %} (an ES module: no build step, no
 * dependencies). It adds the one global `window.Notify` (NotifyClient, NotifyError,
 * safeUrl, compareGroup; `Notify.client` once configured) and, configured by the tag's data
 * attributes, creates and starts `Notify.client`. The client itself is lib/*.js;
 * bundlers import lib/index.js (package.json), which has no side effects.
 *
 *   {% load notify %}{% notify_client %}     renders <script type="module" data-notify-...>
 *   new Notify.NotifyClient({pollUrl, readUrl, user, csrfToken, topics}).start()
 *
 * Module scripts run deferred, in document order with `defer` scripts, before
 * DOMContentLoaded: page scripts that use `window.Notify` from their listeners or
 * from a later deferred script see it as before.
 */
import { NotifyClient, NotifyError, compareGroup, safeUrl } from "./lib/index.js";

const Notify = (window.Notify = window.Notify || {});

function optionsFromScript(script) {
  const data = script.dataset;
  const options = { pollUrl: data.notifyPollUrl, readUrl: data.notifyReadUrl };
  if (data.notifyTimeout) options.timeout = Number(data.notifyTimeout);
  if (data.notifyLimit) options.limit = Number(data.notifyLimit);
  if (data.notifyUser) options.user = data.notifyUser;
  if (data.notifyCsrf) options.csrfToken = data.notifyCsrf;
  if (data.notifyDesktop !== undefined) options.desktop = data.notifyDesktop !== "false";
  if (data.notifyTopics) options.topics = data.notifyTopics.split(/\s+/).filter(Boolean);
  if (data.notifyPublishUrl) options.publishUrl = data.notifyPublishUrl;
  if (data.notifyPresenceUrl) options.presenceUrl = data.notifyPresenceUrl;
  return options;
}

if (!Notify.NotifyClient) {
  Notify.NotifyClient = NotifyClient;
  Notify.NotifyError = NotifyError;
  Notify.safeUrl = safeUrl;
  Notify.compareGroup = compareGroup; // grouping's client rule, for a page's own list

  // {% notify_client %}: configure from the tag's data attributes and start once the
  // page's own scripts have added their listeners. (A module has no
  // document.currentScript: the tag's script is found by its attribute.)
  const script = document.querySelector("script[data-notify-poll-url]");
  if (script && script.dataset.notifyPollUrl) {
    Notify.client = new NotifyClient(optionsFromScript(script));
    if (Notify.bindBells) Notify.bindBells(); // notify-bell.js ran first
    if (script.dataset.notifyAutostart !== "false") {
      if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", () => Notify.client.start(), { once: true });
      } else {
        Notify.client.start();
      }
    }
  }
}
