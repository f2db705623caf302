/*
 * The bell of {% notify_bell %}: an unread badge and a dropdown list, driven by a
 * NotifyClient's events. Markup: notify/templates/notify/bell.html; style: notify.css.
 * Needs a DOM; `new Bell(element, client)` binds one [data-notify-bell] element.
 */

import { groupKey } from "./group.js";
import { safeUrl } from "./url.js";

let panels = 0;

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

// Local time on a 24-hour clock, "2026-11-24 19:58" (a locale's own format would be
// "11/24/2026" here and "7:58 PM" there).
function formatDateTime(date) {
  const pad = (n) => String(n).padStart(2, "0");
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  return `${day} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const seconds = Math.round((date.getTime() - Date.now()) / 1000);
  if (Math.abs(seconds) < 60) return relative.format(seconds, "second");
  const minutes = Math.round(seconds / 60);
  if (Math.abs(minutes) < 60) return relative.format(minutes, "minute");
  const hours = Math.round(minutes / 60);
  if (Math.abs(hours) < 24) return relative.format(hours, "hour");
  return formatDateTime(date);
}

export class Bell {
  constructor(element, client, { maxItems } = {}) {
    this.element = element;
    this.client = client;
    this.maxItems = maxItems || Number(element.dataset.notifyMaxItems) || 10;
    this.button = element.querySelector("[data-notify-toggle]");
    this.badge = element.querySelector("[data-notify-badge]");
    this.panel = element.querySelector("[data-notify-panel]");
    this.list = element.querySelector("[data-notify-list]");
    this.empty = element.querySelector("[data-notify-empty]");
    this.statusLine = element.querySelector("[data-notify-status]");
    this.markAll = element.querySelector("[data-notify-mark-all]");
    this.desktop = element.querySelector("[data-notify-desktop]");
    if (!this.panel.id) this.panel.id = `notify-panel-${++panels}`;
    this.button.setAttribute("aria-controls", this.panel.id);

    const target = client.target;
    target.addEventListener("notify:sync", (e) => this.sync(e.detail.notifications));
    target.addEventListener("notify:message", (e) => this.add(e.detail));
    target.addEventListener("notify:unread", (e) => this.setUnread(e.detail));
    target.addEventListener("notify:read", (e) => this.markItems(e.detail.ids));
    target.addEventListener("notify:status", (e) => this.setStatus(e.detail));
    target.addEventListener("notify:unauthorized", () => this.setStatus("unauthorized"));

    this.button.addEventListener("click", () => this.toggle());
    this.markAll.addEventListener("click", () => this.client.markAllRead().catch(console.error));
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.isOpen) {
        this.toggle(false);
        this.button.focus();
      }
    });
    document.addEventListener("click", (e) => {
      if (this.isOpen && !this.element.contains(e.target)) this.toggle(false);
    });
    if (this.desktop && typeof Notification === "function" && Notification.permission === "default") {
      this.desktop.hidden = false;
      this.desktop.addEventListener("click", async () => {
        await this.client.enableDesktop();
        this.desktop.hidden = true;
      });
    } else if (typeof Notification === "function" && Notification.permission === "granted") {
      client.options.desktop = true;
    }
    // Whatever the client knew before this bell was bound.
    if (client.notifications.length) this.sync(client.notifications);
    if (client.unreadCount !== null) this.setUnread(client.unreadCount);
    this.setStatus(client.status);
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  toggle(open = !this.isOpen) {
    if (open) {
      for (const time of this.list.querySelectorAll("time")) time.textContent = formatTime(time.dateTime);
    }
    this.panel.hidden = !open;
    this.button.setAttribute("aria-expanded", String(open));
    this.element.classList.toggle("notify-bell--open", open);
  }

  setUnread(count) {
    this.badge.textContent = count > 99 ? "99+" : String(count);
    this.badge.hidden = !count;
    this.button.setAttribute("aria-label", count ? `Notifications, ${count} unread` : "Notifications");
    this.element.dataset.unread = String(count);
  }

  setStatus(status) {
    this.element.dataset.status = status;
    const text = {
      reconnecting: "Reconnecting…",
      offline: "Offline: waiting for the network.",
      unauthorized: "Signed out: reload the page to log in again.",
    }[status];
    this.statusLine.textContent = text || "";
    this.statusLine.hidden = !text;
  }

  sync(notifications) {
    // Oldest first, so each lands on top of the ones before it.
    for (const n of [...notifications].sort((a, b) => a.id - b.id)) this.add(n);
  }

  add(n) {
    let item = this.list.querySelector(`[data-notify-id="${n.id}"]`);
    if (!item && this.replaceGroup(n)) return; // a newer one of its group is listed
    if (!item) {
      item = this.render(n);
      const newer = Array.from(this.list.children).find((li) => Number(li.dataset.notifyId) < n.id);
      this.list.insertBefore(item, newer || null);
      while (this.list.children.length > this.maxItems) this.list.lastElementChild.remove();
    }
    item.classList.toggle("notify-item--unread", !n.read);
    this.empty.hidden = this.list.children.length > 0;
  }

  /** Grouping's rule (group.js): remove the items `n` replaces; true if a newer one of its group is listed. */
  replaceGroup(n) {
    const key = groupKey(n);
    if (key === null) return false;
    for (const li of Array.from(this.list.children)) {
      if (li.dataset.notifyGroup !== key) continue;
      if (Number(li.dataset.notifyId) > n.id) return true;
      li.remove();
    }
    return false;
  }

  render(n) {
    const item = document.createElement("li");
    item.className = `notify-item notify-item--${n.level || "info"}`;
    item.dataset.notifyId = n.id;
    const key = groupKey(n);
    if (key !== null) item.dataset.notifyGroup = key;
    const url = safeUrl(n.url);
    const main = document.createElement(url ? "a" : "div");
    main.className = "notify-item__main";
    if (url) {
      main.href = url;
      main.addEventListener("click", () => this.read(n.id, item));
    }
    const title = document.createElement("span");
    title.className = "notify-item__title";
    title.textContent = n.title;
    main.append(title);
    if (n.body) {
      const body = document.createElement("span");
      body.className = "notify-item__body";
      body.textContent = n.body;
      main.append(body);
    }
    const time = document.createElement("time");
    time.className = "notify-item__time";
    time.dateTime = n.created_at;
    time.textContent = formatTime(n.created_at);
    const date = new Date(n.created_at);
    if (!Number.isNaN(date.getTime())) time.title = formatDateTime(date);
    main.append(time);
    const mark = document.createElement("button");
    mark.type = "button";
    mark.className = "notify-item__mark";
    mark.title = "Mark read";
    mark.setAttribute("aria-label", `Mark “${n.title}” read`);
    mark.textContent = "✓";
    mark.addEventListener("click", () => this.read(n.id, item));
    item.append(main, mark);
    return item;
  }

  read(id, item) {
    if (!item.classList.contains("notify-item--unread")) return;
    item.classList.remove("notify-item--unread"); // at once; the server confirms
    this.client.markRead([id]).catch((error) => {
      item.classList.add("notify-item--unread");
      console.error(error);
    });
  }

  markItems(ids) {
    for (const item of this.list.children) {
      if (ids === null || ids.includes(Number(item.dataset.notifyId))) {
        item.classList.remove("notify-item--unread");
      }
    }
  }
}
