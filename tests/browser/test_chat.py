"""The demo's chat rooms: topics in notify.js, in real browsers (and the page's server side)."""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.template import Context, Template, TemplateSyntaxError
from django.test import RequestFactory

import notify
from notify.models import Topic, TopicMessage
from tests.browser.conftest import PollWatch
from tests.browser.test_tabs import WITHOUT_WEB_LOCKS

browser_test = pytest.mark.browser

# Records the topic events a page sees, before its scripts run.
TOPIC_RECORDER = """
window.__topics = []; window.__gaps = []; window.__forbidden = [];
document.addEventListener("notify:topic", (e) => window.__topics.push(e.detail.message.id));
document.addEventListener("notify:gap", (e) => window.__gaps.push(e.detail));
document.addEventListener("notify:forbidden", (e) => window.__forbidden.push(e.detail));
"""


def new_room() -> str:
    return f"t{os.getpid()}-{os.urandom(3).hex()}"


def open_chat(context: Any, base_url: str, room: str) -> Any:
    page = context.new_page()
    page.goto(f"{base_url}/chat/{room}/")
    page.wait_for_selector('#connection[data-status="connected"]')
    return page


def say(page: Any, text: str) -> None:
    page.fill("#chat-text", text)
    page.click("#chat-form button[type=submit]")


def shown_ids(page: Any) -> list[int]:
    ids = page.eval_on_selector_all("#messages .chat-message", "items => items.map(i => i.dataset.id)")
    return [int(i) for i in ids]


def query(request: Any) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(request.url).query).items()}


class Polls(PollWatch):
    """PollWatch, and when each poll started and ended, to tell polls notify.js aborted apart.

    ``follow()`` aborts the held poll and starts one with the new streams at once: the
    browser has cancelled the first when the second starts, but Playwright may report
    the cancellation after the start.
    """

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.spans: dict[Any, list[float]] = {}
        context.on(
            "request",
            lambda r: self.spans.setdefault(r, [time.monotonic(), float("inf")]) if "/notify/poll" in r.url else None,
        )
        context.on("requestfinished", self._end)
        context.on("requestfailed", self._end)

    def _end(self, request: Any) -> None:
        if request in self.spans:
            self.spans[request][1] = time.monotonic()

    def aborted(self) -> list[Any]:
        return [r for r in self.spans if r.failure is not None]

    def most_at_once_not_aborted(self) -> int:
        spans = [span for r, span in self.spans.items() if r.failure is None]
        return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def chat_streams(topic: str) -> str:
    """What a chat page's one poll follows: the inbox, the room, and the room's join and leave events."""
    return f"inbox,{topic},presence:{topic}"


def assert_one_multi_stream_poll(polls: Polls, topic: str) -> None:
    """Every poll of the page was one multi-stream poll of the inbox and the room, one at a time."""
    assert polls.requests, "no poll"
    assert {query(r).get("streams") for r in polls.requests} == {chat_streams(topic)}
    assert polls.most_in_flight == 1 and not polls.aborted()
    assert any(float(query(r).get("timeout", 0)) > 0 for r in polls.requests), "no held poll"


@browser_test
def test_a_message_from_one_browser_appears_in_the_other_within_a_second(server, browser, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    room = "lobby"  # shown in the screenshot; each test starts with an empty database
    topic = f"room:{room}"
    contexts = {user: browser.context(user, init_script=TOPIC_RECORDER) for user in (alice, bob)}
    polls = {user: Polls(context) for user, context in contexts.items()}
    page_a, page_b = (open_chat(contexts[user], server.url, room) for user in (alice, bob))

    delays = []
    for sender, receiver, text in [
        (page_a, page_b, "Hi Bob, the build is green"),
        (page_b, page_a, "Great, deploying now"),
        (page_a, page_b, "Ping me when it's out"),
    ]:
        started = time.monotonic()
        say(sender, text)
        receiver.locator("#messages .chat-message", has_text=text).wait_for(timeout=5000)
        delays.append(time.monotonic() - started)
    # The inbox comes in the same poll: a notification reaches alice's bell meanwhile.
    (sent,) = notify.send(alice, "Deploy finished", "main is live")
    page_a.wait_for_function(f"window.__notify.messages.includes({sent.pk})", timeout=2000)

    assert max(delays) < 1.5, delays
    ids = list(TopicMessage.objects.filter(topic_id=topic).order_by("seq").values_list("pk", flat=True))
    assert len(ids) == 3
    for page in (page_a, page_b):
        page.wait_for_function(f"window.__topics.length >= {len(ids)}", timeout=2000)
        assert shown_ids(page) == ids  # each once, in order
        assert sorted(page.evaluate("window.__topics")) == ids  # announced once each, own messages too
    assert page_a.locator(".chat-message.mine").count() == 2 and page_b.locator(".chat-message.mine").count() == 1
    assert page_b.locator("#messages .chat-message").last.locator(".chat-sender").inner_text() == "alice"
    for watched in polls.values():
        assert_one_multi_stream_poll(watched, topic)

    page_a.fill("#chat-text", "Thanks!")
    browser.document(page_a, "chat")


@browser_test
def test_a_reload_resumes_the_room_where_it_stopped(server, browser, make_user):
    alice, bob = make_user(), make_user()
    room = new_room()
    topic = f"room:{room}"
    context = browser.context(alice, init_script=TOPIC_RECORDER)
    page = open_chat(context, server.url, room)
    seen = notify.publish(topic, {"text": "seen before closing"}, sender=bob)
    page.wait_for_function(f"window.__topics.includes({seen.pk})", timeout=2000)
    page.close()

    missed = [notify.publish(topic, {"text": f"while closed {i}"}, sender=bob) for i in range(2)]
    polls = Polls(context)
    page = open_chat(context, server.url, room)
    # Generous: the closed page's Web Lock must be released first (see test_inbox).
    page.wait_for_function(f"window.__topics.length >= {len(missed)}", timeout=8000)
    page.wait_for_timeout(200)

    assert page.evaluate("window.__topics") == [m.pk for m in missed]  # not the one seen before
    assert shown_ids(page) == [seen.pk, *(m.pk for m in missed)]
    first = query(polls.requests[0])
    assert f"{topic}:{seen.seq}" in first["after"].split(",")  # resumed from the stored cursor
    assert_one_multi_stream_poll(polls, topic)


@browser_test
def test_a_topic_the_site_refuses_is_reported_and_dropped(server, browser, make_user):
    bob = make_user()  # not staff: the demo keeps room:staff-* for staff
    room = new_room()
    topic = f"room:{room}"
    context = browser.context(bob, init_script=TOPIC_RECORDER)
    polls = Polls(context)
    page = open_chat(context, server.url, room)

    page.evaluate("Notify.client.follow('room:staff-ops')")
    page.wait_for_function("window.__forbidden.length === 1", timeout=3000)
    refused = page.evaluate("Notify.client.publish('room:staff-ops', {text: 'hi'}).then(() => 0, (e) => e.status)")
    later = notify.publish(topic, {"text": "still here"})
    page.wait_for_function(f"window.__topics.includes({later.pk})", timeout=2000)

    first, second = page.evaluate("window.__forbidden")
    assert (first["topic"], first["action"], first["error"]) == ("room:staff-ops", "read", "forbidden")
    assert (second["topic"], second["action"], refused) == ("room:staff-ops", "post", 403)
    assert page.evaluate("Notify.client.topics") == [topic, f"presence:{topic}"]
    asked = [query(r)["streams"] for r in polls.requests]
    assert f"{chat_streams(topic)},room:staff-ops" in asked and asked[-1] == chat_streams(topic)
    # follow() restarted the held poll (none to restart if it came between two polls: the
    # page's own presence join answers one at a moment of its own); one poll at a time.
    assert len(polls.aborted()) <= 1 and polls.most_at_once_not_aborted() == 1
    assert page.goto(f"{server.url}/chat/staff-ops/").status == 403


@browser_test
def test_a_message_with_markup_is_shown_as_text(server, browser, make_user):
    alice, bob = make_user(), make_user()
    room = new_room()
    markup = '<img src=x onerror="window.__xss=1"><b>bold</b>'
    page_b = open_chat(browser.context(bob, init_script=TOPIC_RECORDER), server.url, room)
    page_a = open_chat(browser.context(alice, init_script=TOPIC_RECORDER), server.url, room)

    say(page_a, markup)
    page_b.locator("#messages .chat-message").first.wait_for(timeout=5000)
    page_b.reload()  # and rendered by the server
    page_b.wait_for_selector('#connection[data-status="connected"]')

    # The "Join" field checks room names in the browser too (its pattern is valid there).
    validity = "(i) => [['a b', 'tea-room_2'].map((v) => { i.value = v; return i.checkValidity(); }), i.pattern]"
    assert page_b.eval_on_selector(".chat-join input", validity) == [[False, True], r"[a-zA-Z0-9_\-]{1,90}"]
    for page in (page_a, page_b):
        assert page.locator("#messages .chat-text").all_inner_texts() == [markup]
        assert page.locator("#messages img, #messages b").count() == 0
        assert page.evaluate("window.__xss") is None


@browser_test
def test_messages_past_retention_are_reported_as_a_gap(server, browser, make_user):
    alice = make_user()
    room = new_room()
    topic = f"room:{room}"
    context = browser.context(alice, init_script=TOPIC_RECORDER)
    page = open_chat(context, server.url, room)
    seen = notify.publish(topic, {"text": "seen"})
    page.wait_for_function(f"window.__topics.includes({seen.pk})", timeout=2000)
    page.close()
    dropped = [notify.publish(topic, {"text": f"dropped {i}"}) for i in range(2)]
    kept = notify.publish(topic, {"text": "kept"})
    # What retention does (notify.topics._prune), for messages the page has not seen.
    TopicMessage.objects.filter(pk__in=[m.pk for m in dropped]).delete()
    Topic.objects.filter(name=topic).update(pruned_seq=dropped[-1].seq)

    page = open_chat(context, server.url, room)
    page.wait_for_function(f"window.__topics.includes({kept.pk})", timeout=8000)

    assert page.evaluate("window.__gaps") == [{"topic": topic, "oldest_cursor": str(dropped[-1].seq)}]
    assert page.locator("#chat-gap").is_visible()
    assert page.evaluate("window.__topics") == [kept.pk]


@browser_test
@pytest.mark.parametrize("election", ["web-locks", "broadcast-channel"])
def test_an_inbox_tab_polls_the_room_of_a_chat_tab_in_its_one_poll(server, browser, make_user, election):
    alice = make_user()
    room = new_room()
    topic = f"room:{room}"
    hide_locks = WITHOUT_WEB_LOCKS if election == "broadcast-channel" else ""
    context = browser.context(alice, init_script=TOPIC_RECORDER + hide_locks)
    polls = Polls(context)
    inbox = context.new_page()
    inbox.goto(f"{server.url}/inbox/")
    inbox.wait_for_function("Notify.client.leader && Notify.client.status === 'connected'")
    chat = open_chat(context, server.url, room)
    inbox.wait_for_timeout(300)

    message = notify.publish(topic, {"text": "to the chat tab"})
    chat.locator(f'#messages [data-id="{message.pk}"]').wait_for(timeout=2000)
    (sent,) = notify.send(alice, "to both tabs")
    for tab in (inbox, chat):
        tab.wait_for_function(f"window.__notify.messages.includes({sent.pk})", timeout=2000)

    assert inbox.evaluate("Notify.client.leader") and not chat.evaluate("Notify.client.leader")
    assert inbox.evaluate("window.__topics") == []  # the inbox tab does not follow the room
    assert polls.pages() == {inbox} and polls.most_at_once_not_aborted() == 1
    assert query(polls.requests[-1])["streams"] == chat_streams(topic)

    chat.close()  # says so: the leader goes back to the inbox-only poll
    inbox.wait_for_function("Notify.client._polling === ''", timeout=3000)
    inbox.wait_for_timeout(200)
    assert set(query(polls.requests[-1])) == {"after", "timeout"}


@browser_test
def test_another_chat_tab_takes_over_the_room_when_the_polling_tab_closes(server, browser, make_user):
    alice = make_user()
    room = new_room()
    topic = f"room:{room}"
    context = browser.context(alice, init_script=TOPIC_RECORDER)
    polls = Polls(context)
    tabs = [open_chat(context, server.url, room) for _ in range(2)]
    first = notify.publish(topic, {"text": "to both tabs"})
    for tab in tabs:
        tab.locator(f'#messages [data-id="{first.pk}"]').wait_for(timeout=2000)
    (leader,) = [tab for tab in tabs if tab.evaluate("Notify.client.leader")]
    (follower,) = [tab for tab in tabs if tab is not leader]

    leader.close()
    polls.forget(leader)
    follower.wait_for_function("Notify.client.leader", timeout=4000)
    second = notify.publish(topic, {"text": "after the takeover"})
    follower.locator(f'#messages [data-id="{second.pk}"]').wait_for(timeout=2000)
    follower.wait_for_timeout(200)

    assert follower.evaluate("window.__topics") == [first.pk, second.pk]  # each once, none again
    assert shown_ids(follower) == [first.pk, second.pk]
    assert {query(r)["streams"] for r in polls.requests} == {chat_streams(topic)}
    resumed = [query(r) for r in polls.requests if r.frame.page == follower]
    assert f"{topic}:{second.seq - 1}" in resumed[0]["after"].split(",")  # the cursor the leader reached


# --- the page and the tag, without a browser (these run on PostgreSQL too) ------------------


def render(source: str, user: Any) -> str:
    request = RequestFactory().get("/")
    request.user = user
    return Template("{% load notify %}" + source).render(Context({"request": request}))


def test_client_tag_follows_topics(make_user):
    html = render('{% notify_client topics="room:42 lobby room:42" %}', make_user())

    assert 'data-notify-topics="room:42 lobby"' in html
    assert 'data-notify-publish-url="/notify/topics/{topic}/publish"' in html
    assert 'data-notify-presence-url="/notify/topics/{topic}/presence"' in html
    assert "data-notify-topics" not in render("{% notify_client %}", make_user())


@pytest.mark.parametrize("topics", ["inbox", "room 42,x", "room:é"])
def test_client_tag_refuses_a_bad_topic(make_user, topics):
    with pytest.raises(TemplateSyntaxError, match="topic name must be"):
        render(f'{{% notify_client topics="{topics}" %}}', make_user())


def test_chat_page_renders_the_rooms_last_messages_escaped(client, make_user, settings):
    settings.NOTIFY = {**settings.NOTIFY, "PRESENCE": True}  # the demo's (off in the PostgreSQL leg: tests/settings.py)
    alice = make_user()
    notify.publish("room:tea", {"text": "<script>alert(1)</script>"}, sender=alice)
    notify.publish("room:tea", {"text": "from the server"})
    client.force_login(alice)

    html = client.get("/chat/tea/").content.decode()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "from the server" in html
    assert 'data-notify-topics="room:tea presence:room:tea"' in html


def test_staff_rooms_are_for_staff(client, make_user):
    client.force_login(make_user())
    assert client.get("/chat/staff-ops/").status_code == 403
    client.force_login(make_user(is_staff=True))
    assert client.get("/chat/staff-ops/").status_code == 200


def test_join_goes_to_the_room_or_the_lobby(client, make_user):
    client.force_login(make_user())
    assert client.get("/chat/", {"room": "tea"})["Location"] == "/chat/tea/"
    assert client.get("/chat/", {"room": "no spaces"})["Location"] == "/chat/lobby/"
    client.logout()
    assert client.get("/chat/lobby/").status_code == 302  # to the login page
