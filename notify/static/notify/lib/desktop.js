/** Desktop pop-ups (the Notification API) for notifications that arrive while the tab is hidden. */

import { safeUrl } from "./url.js";

/** Asks for permission (call it from a click); resolves to "granted", "denied", "default" or "unsupported". */
export async function requestPermission(env) {
  const Notification = env.Notification();
  if (!Notification) return "unsupported";
  return Notification.requestPermission();
}

/** Shows `fresh` notifications (one summary for more than three) if allowed and the tab is hidden. */
export function showDesktop(env, fresh) {
  const Notification = env.Notification();
  if (!fresh.length || !Notification || Notification.permission !== "granted" || env.visible()) return 0;
  const shown = fresh.length > 3 ? [{ id: "many", title: `${fresh.length} new notifications`, body: "" }] : fresh;
  for (const n of shown) {
    try {
      const popup = new Notification(n.title, { body: n.body || "", tag: `notify-${n.id}` });
      popup.onclick = () => {
        env.focus();
        const url = safeUrl(n.url, env.baseUrl());
        if (url) env.navigate(url);
        popup.close();
      };
    } catch {
      return 0; // e.g. Android Chrome wants a service worker for this
    }
  }
  return shown.length;
}
