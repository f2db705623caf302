/*
 * The demo site's shared behaviour, loaded by base.html before the page's own scripts:
 * - times: every <time data-format="time|time-seconds|datetime"> is shown in the browser's
 *   time zone on a 24-hour clock (HH:MM, HH:MM:SS, YYYY-MM-DD HH:MM), the formats the
 *   server renders them in before this runs; `Demo.showTime(element)` for new ones;
 * - notices (Django's messages): a close button; success and info ones clear themselves
 *   after a while; `Demo.clearNotice(tag)` removes the notices a page knows to be over,
 *   e.g. "reminder:<id>" once that reminder has arrived.
 * Adds the one global `Demo`.
 */
(() => {
  "use strict";

  const Demo = (window.Demo = window.Demo || {});
  const CLEAR_AFTER_MS = 12000;

  const pad = (n) => String(n).padStart(2, "0");
  const formats = {
    time: (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}`,
    "time-seconds": (d) => `${formats.time(d)}:${pad(d.getSeconds())}`,
    date: (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`,
    datetime: (d) => `${formats.date(d)} ${formats.time(d)}`,
  };

  Demo.formatTime = (date, format = "datetime") => (formats[format] || formats.datetime)(date);

  Demo.showTime = (time) => {
    const date = new Date(time.dateTime);
    if (Number.isNaN(date.getTime())) return;
    time.textContent = Demo.formatTime(date, time.dataset.format);
    time.title = `${formats.date(date)} ${formats["time-seconds"](date)}`;
  };

  Demo.dismiss = (notice) => {
    const list = notice.parentElement;
    notice.remove();
    if (list && list.classList.contains("notices") && !list.children.length) list.remove();
  };

  Demo.clearNotice = (tag) => {
    document.querySelectorAll(".notice[data-tags]").forEach((notice) => {
      if (notice.dataset.tags.split(/\s+/).includes(tag)) Demo.dismiss(notice);
    });
  };

  document.addEventListener("click", (e) => {
    const close = e.target.closest(".notice-close");
    if (close) Demo.dismiss(close.closest(".notice"));
  });

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("time[data-format]").forEach(Demo.showTime);
    document.querySelectorAll(".notice[data-clear]").forEach((notice) => {
      setTimeout(() => notice.isConnected && Demo.dismiss(notice), CLEAR_AFTER_MS);
    });
  });
})();
