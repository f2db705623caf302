/*
 * The page script of {% notify_bell %} (an ES module): adds `Notify.Bell` to the one
 * global namespace and binds every [data-notify-bell] to `Notify.client`.
 */
import { Bell } from "./lib/bell.js";

const Notify = (window.Notify = window.Notify || {});

function bindAll() {
  if (!Notify.client) return; // no {% notify_client %} on this page (or not logged in)
  for (const element of document.querySelectorAll("[data-notify-bell]")) {
    if (!element.notifyBell) element.notifyBell = new Bell(element, Notify.client);
  }
}

if (!Notify.Bell) {
  Notify.Bell = Bell;
  // Whichever of notify.js and this file runs first: notify.js calls bindBells once
  // its client exists, and this binds at once if it already does.
  Notify.bindBells = bindAll;
  bindAll();
}
