/*
 * A single-page app on another origin than Django's: it follows the user's inbox and
 * one chat room through the notify client, authenticated by a bearer token.
 *
 * Where the token comes from is the app's business (its own login flow: a Django view
 * that calls ApiToken.issue and returns the token). This example is handed one in the
 * address's fragment, which the browser never sends to any server:
 *
 *   http://127.0.0.1:8001/#token=ntf_...&user=alice&api=http://127.0.0.1:8000
 *
 * `user` names the client's localStorage keys (cursors, ids seen): the user's id, so
 * that another user in this browser does not resume from these. `api` is Django's origin.
 */
import { NotifyClient, NotifyError } from "django-notify-longpoll";

const ROOM = "room:lobby";
const $ = (id) => document.getElementById(id);

/** The token, user and Django origin: from the fragment (then out of the address bar), or kept for this tab. */
function configuration() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("token")) {
    for (const name of ["token", "user", "api"]) {
      if (fragment.has(name)) sessionStorage.setItem(`spa:${name}`, fragment.get(name));
    }
    history.replaceState(null, "", location.pathname + location.search);
  }
  return {
    token: sessionStorage.getItem("spa:token"),
    user: sessionStorage.getItem("spa:user") || "default",
    api: sessionStorage.getItem("spa:api") || "http://127.0.0.1:8000",
  };
}

function problem(text) {
  $("problem").textContent = text;
  $("problem").hidden = !text;
}

// Text only: a title, a body or a chat message is never markup.
function item(text, note, className = "") {
  const li = document.createElement("li");
  li.textContent = text;
  if (note) li.append(Object.assign(document.createElement("small"), { textContent: note }));
  li.className = className;
  return li;
}

function renderInbox(client) {
  $("inbox").replaceChildren(
    ...client.notifications.map((n) => item(n.title, n.body, n.read ? "" : "unread")),
  );
}

function start() {
  const { token, user, api } = configuration();
  $("origin").textContent = location.origin;
  $("api").textContent = api;
  $("room-name").textContent = ROOM;
  if (!token) {
    problem("No token: open this page as …/#token=<token>&user=<name>&api=<Django's origin>.");
    return;
  }

  const client = new NotifyClient({ baseUrl: api, token, user, topics: [ROOM] });

  document.addEventListener("notify:status", ({ detail }) => {
    $("status").textContent = detail;
  });
  document.addEventListener("notify:unread", ({ detail }) => {
    $("unread").textContent = String(detail);
  });
  for (const type of ["notify:sync", "notify:message", "notify:read"]) {
    document.addEventListener(type, () => renderInbox(client));
  }
  document.addEventListener("notify:topic", ({ detail }) => {
    if (detail.topic !== ROOM) return;
    const { message } = detail;
    $("room").append(item(String(message.data.text ?? ""), message.sender ? message.sender.username : "", ""));
  });
  document.addEventListener("notify:unauthorized", ({ detail }) => {
    sessionStorage.removeItem("spa:token");
    problem(`Signed out: ${detail.detail || detail.error}`);
  });
  document.addEventListener("notify:forbidden", ({ detail }) => {
    problem(`Not allowed to ${detail.action} ${detail.topic}: ${detail.detail || detail.error}`);
  });

  $("mark-all-read").addEventListener("click", () => {
    client.markAllRead().catch((error) => problem(error.message));
  });
  $("say").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = event.target.elements.text;
    try {
      // The message comes back through the poll (notify:topic), like everyone else's.
      await client.publish(ROOM, { text: input.value });
      input.value = "";
    } catch (error) {
      problem(error instanceof NotifyError ? `${error.status}: ${error.message}` : String(error));
    }
  });

  client.start();
  window.spa = { client }; // for the console (and the tests)
}

start();
