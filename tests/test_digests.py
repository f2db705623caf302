"""Email digests (notify.digests, docs/email.md) received by a real SMTP server on loopback: grouping
and links, nothing for what was read, the window, quiet hours, preferences, per-level delays, SMTP
failures, and exactly once with two scheduler processes and across a scheduler's restart.

Time is controlled without sleeping: notifications are made due by moving ``created_at`` into the
past, a window is ended by moving the user's ``DigestSchedule.not_before``; the scheduler processes
run with a delay of 0.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

import notify
from notify import digests, outbox, preferences, receipts
from notify.models import Digest, DigestSchedule, EmailStatus, Notification
from tests.browser.conftest import wait_until
from tests.scheduler import Scheduler
from tests.server import Server, expect_error
from tests.smtp import Mailbox, SmtpServer, header, html_of, text_of

pytestmark = pytest.mark.django_db(transaction=True)

DELAY = 60  # seconds, every level (in-process tests)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(settings: Any, smtp: SmtpServer) -> Mailbox:
    """Digests on, sent through the loopback SMTP server by Django's SMTP backend."""
    settings.NOTIFY = {
        **settings.NOTIFY,
        "EMAIL_DIGESTS": True,
        "EMAIL_DELAY": dict.fromkeys(("info", "success", "warning", "error"), DELAY),
        "EMAIL_DIGEST_WINDOW": 3600,
        "SITE_URL": "https://example.com",
        "INBOX_URL": "/inbox/",
        "EMAIL_FROM": "Example <noreply@example.com>",
    }
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp.port
    settings.EMAIL_TIMEOUT = 5
    return smtp.mailbox


@pytest.fixture
def reader(make_user: Any) -> Any:
    """Users with an email address."""

    def make(**fields: Any) -> Any:
        user = make_user(**fields)
        user.email = f"{user.username}@example.org"
        user.save(update_fields=["email"])
        return user

    return make


def shown_ago(notifications: list[Notification], seconds: float = DELAY + 60) -> None:
    """Make them look sent ``seconds`` ago (past their delay)."""
    at = timezone.now() - datetime.timedelta(seconds=seconds)
    Notification.objects.filter(pk__in=[n.pk for n in notifications]).update(created_at=at)


def run_once() -> str:
    out = io.StringIO()
    call_command("notify_scheduler", "--once", stdout=out)
    return out.getvalue()


def end_window(user: Any) -> None:
    """As if the user's digest window (or quiet hours) had passed."""
    DigestSchedule.objects.filter(user=user).update(not_before=timezone.now() - datetime.timedelta(seconds=1))


def listed(message: Any) -> list[str]:
    """The titles a digest lists (its text part's "- title" lines)."""
    return re.findall(r"^- (.+)$", text_of(message), re.MULTILINE)


def statuses(notifications: list[Notification]) -> list[str]:
    by_pk = dict(Notification.objects.filter(pk__in=[n.pk for n in notifications]).values_list("pk", "email_status"))
    return [by_pk[n.pk] for n in notifications]


def test_a_digest_groups_what_stayed_unread_by_kind_with_absolute_links(mailbox, reader):
    user = reader()
    sent = [
        *notify.send(user, "Invoice 1", "Due in 30 days", kind="billing.invoice", url="/billing/1"),
        *notify.send(user, "Comment on post 7", kind="comments", url="https://elsewhere.example.net/7"),
        *notify.send(user, "Invoice 2", kind="billing.invoice", level="warning"),
        *notify.send(user, "No kind at all", url="javascript:alert(1)"),
        *notify.send(user, "Comment on post 9", kind="comments"),
    ]
    Notification.objects.filter(pk=sent[4].pk).update(group_count=3)  # as grouping would leave it
    shown_ago(sent)

    assert "Sent 1 digest(s)." in run_once()

    [message] = mailbox.received()
    [digest] = Digest.objects.all()
    assert header(message, "To") == user.email
    assert header(message, "From") == "Example <noreply@example.com>"
    assert header(message, "Subject") == "5 unread notifications on example.com"
    assert header(message, "Message-ID") == digest.message_id
    assert header(message, "Auto-Submitted") == "auto-generated"
    assert header(message, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    unsubscribe = re.fullmatch(
        r"<(https://example\.com/notify/unsubscribe/[^>]+)>", header(message, "List-Unsubscribe")
    )
    assert unsubscribe is not None
    text = text_of(message)
    # By kind, each kind once, in the order it first appears; a group's count shown when above 1.
    assert re.findall(r"^([^-\s].*) \((\d+)\)$", text, re.MULTILINE) == [
        ("billing.invoice", "2"),
        ("comments", "2"),
        ("Other", "1"),
    ]
    assert text.index("Invoice 1") < text.index("Invoice 2") < text.index("Comment on post 7")
    assert "- Comment on post 9 (3)" in text
    assert "https://example.com/billing/1" in text and "https://elsewhere.example.net/7" in text
    assert "javascript:" not in text
    assert "https://example.com/inbox/" in text and unsubscribe[1] in text
    html = html_of(message)
    assert html.count('class="digest-kind"') == 3 and html.count('class="digest-item"') == 5
    assert 'href="https://example.com/inbox/"' in html and f'href="{unsubscribe[1]}"' in html
    assert "javascript:" not in html
    assert statuses(sent) == [EmailStatus.SENT] * 5
    assert digest.status == "sent" and digest.sent_at is not None
    assert run_once().endswith("Sent 0 digest(s).\n")  # nothing twice
    assert len(mailbox.received()) == 1


def test_what_was_read_on_the_page_is_never_emailed(mailbox, reader, server, token_for):
    user = reader()
    token = token_for(user)
    read_in_page, read_in_history, unread = (notify.send(user, title)[0] for title in ("seen", "seen too", "unseen"))
    for path, body in (
        ("/notify/read", {"ids": [read_in_page.pk]}),
        ("/notify/history/read", {"ids": [read_in_history.pk]}),
    ):
        reply = server.request(
            "POST",
            path,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            body=json.dumps(body).encode(),
        )
        assert reply.status == 200, reply.body
    shown_ago([read_in_page, read_in_history, unread])

    run_once()

    [message] = mailbox.received()
    assert listed(message) == ["unseen"]
    assert header(message, "Subject") == "1 unread notification on example.com"
    assert statuses([read_in_page, read_in_history, unread]) == [
        EmailStatus.SKIPPED,
        EmailStatus.SKIPPED,
        EmailStatus.SENT,
    ]


@pytest.fixture(scope="module")
def receipts_server(redis_answers: None, django_db_setup: Any, django_db_blocker: Any) -> Iterator[Server]:
    """A uvicorn with digests on, as a deployment that emails them: its held polls note receipts."""
    with django_db_blocker.unblock():
        live = Server(env={"NOTIFY_EMAIL_DIGESTS": "1"}).start()
    yield live
    live.stop()


@pytest.mark.parametrize("skip_received", [True, False])
def test_what_an_open_page_received_is_not_emailed_unless_the_project_says_so(
    mailbox, reader, receipts_server, token_for, settings, skip_received
):
    settings.NOTIFY = {**settings.NOTIFY, "EMAIL_SKIP_RECEIVED": skip_received}
    user = reader()
    sent = [notify.send(user, title)[0] for title in ("on the page", "on the page too", "after the page closed")]
    # The page's held poll presents the cursor of what it has: the first two.
    reply = receipts_server.poll(token_for(user), after=str(sent[1].seq), timeout=0.1)
    assert reply.status == 200, reply.body[:300]
    wait_until(lambda: receipts.received([user.pk]) == {user.pk: sent[1].seq})
    shown_ago(sent)

    run_once()

    [message] = mailbox.received()
    if skip_received:
        assert listed(message) == ["after the page closed"]
        assert statuses(sent) == [EmailStatus.SKIPPED, EmailStatus.SKIPPED, EmailStatus.SENT]
    else:
        assert listed(message) == ["on the page", "on the page too", "after the page closed"]


def test_what_is_read_after_the_digest_was_claimed_is_left_out_of_it(mailbox, reader):
    alice, bob = reader(), reader()
    alice_sent = [notify.send(alice, f"alice {i}")[0] for i in range(2)]
    [bob_only] = notify.send(bob, "bob's only one")
    shown_ago([*alice_sent, bob_only])
    assert digests.claim_digests() == 2

    Notification.objects.filter(pk__in=[alice_sent[0].pk, bob_only.pk]).mark_read()
    done = outbox.send_pending()

    assert (done.sent, done.failed) == (1, 0)
    [message] = mailbox.received()
    assert header(message, "To") == alice.email and "alice 1" in text_of(message) and "alice 0" not in text_of(message)
    assert statuses([*alice_sent, bob_only]) == [EmailStatus.SKIPPED, EmailStatus.SENT, EmailStatus.SKIPPED]
    assert Digest.objects.get(user=bob).status == "dropped"  # nothing left to send


def test_a_notification_due_inside_the_window_waits_for_the_next_digest(mailbox, reader):
    user = reader()
    first = notify.send(user, "first")
    shown_ago(first)
    run_once()
    second = notify.send(user, "second")
    shown_ago(second)

    run_once()
    assert len(mailbox.received()) == 1  # within the window: no second digest yet
    assert statuses(second) == [EmailStatus.PENDING]

    end_window(user)
    run_once()
    first_message, second_message = mailbox.received()
    assert "first" in text_of(first_message) and "second" not in text_of(first_message)
    assert "second" in text_of(second_message) and "first" not in text_of(second_message)
    assert header(first_message, "Message-ID") != header(second_message, "Message-ID")


def test_quiet_hours_defer_the_digest_to_their_end(mailbox, reader):
    user = reader()
    now = timezone.now().astimezone(datetime.UTC)
    start, end = (now - datetime.timedelta(hours=1)).time(), (now + datetime.timedelta(hours=1)).time()
    preferences.update_preferences(user, quiet_hours=(start, end), timezone_name="UTC")
    sent = notify.send(user, "during the night")
    shown_ago(sent)

    run_once()

    assert mailbox.received() == []
    assert statuses(sent) == [EmailStatus.PENDING]
    not_before = DigestSchedule.objects.get(user=user).not_before
    assert not_before is not None and abs((not_before - (now + datetime.timedelta(hours=1))).total_seconds()) < 61
    preferences.update_preferences(user, quiet_hours=None)
    end_window(user)  # the quiet hours are over
    run_once()
    assert len(mailbox.to(user.email)) == 1


def test_a_user_who_turned_email_off_gets_nothing(mailbox, reader):
    off, no_address, on = reader(), reader(), reader()
    sent = [notify.send(user, "hello")[0] for user in (off, no_address, on)]
    preferences.update_preferences(off, email_enabled=False)
    type(no_address).objects.filter(pk=no_address.pk).update(email="")
    shown_ago(sent)

    run_once()

    assert [header(m, "To") for m in mailbox.received()] == [on.email]
    assert statuses(sent) == [EmailStatus.NONE, EmailStatus.NONE, EmailStatus.SENT]
    # And send() itself no longer marks anything to be emailed for the one who turned it off.
    assert notify.send(off, "later")[0].email_status == EmailStatus.NONE


def test_each_level_waits_its_own_delay(mailbox, reader, settings):
    settings.NOTIFY = {**settings.NOTIFY, "EMAIL_DELAY": {"error": 60, "info": 3600, "warning": None}}
    settings.NOTIFY["EMAIL_DIGEST_WINDOW"] = 0
    user = reader()
    error, info, warning = (notify.send(user, level, level=level)[0] for level in ("error", "info", "warning"))
    shown_ago([error, info, warning], seconds=120)

    run_once()
    [first] = mailbox.received()
    assert "error" in text_of(first) and "info" not in text_of(first)
    assert statuses([error, info, warning]) == [EmailStatus.SENT, EmailStatus.PENDING, EmailStatus.NONE]

    shown_ago([info], seconds=3700)
    run_once()
    assert "info" in text_of(mailbox.received()[1])
    assert len(mailbox.received()) == 2  # warning: never emailed


def test_an_email_only_notification_is_emailed_and_a_reminder_counts_from_its_time(mailbox, reader):
    user = reader()
    preferences.set_rule(user, kind="digest-only", page=False, email=True)
    [email_only] = notify.send(user, "by email only", kind="digest-only")
    later = timezone.now() + datetime.timedelta(hours=2)
    [reminder] = notify.send(user, "a reminder for later", kind="digest-only", deliver_at=later)
    assert email_only.page is False and email_only.seq is None
    shown_ago([email_only, reminder])  # created long ago; the reminder is still not due

    run_once()

    [message] = mailbox.received()
    assert "by email only" in text_of(message) and "a reminder for later" not in text_of(message)
    assert statuses([email_only, reminder]) == [EmailStatus.SENT, EmailStatus.PENDING]


def test_preferences_decide_what_is_emailed_per_kind_and_level(mailbox, reader):
    user = reader()
    preferences.set_rule(user, kind="chat", page=True, email=False)  # chat: the page only
    preferences.set_rule(user, kind="chat", level="error", page=True, email=True)  # but chat errors too
    sent = [
        *notify.send(user, "a chat message", kind="chat.room"),
        *notify.send(user, "a chat error", kind="chat.room", level="error"),
        *notify.send(user, "an invoice", kind="billing"),
    ]
    assert [n.email_status for n in sent] == [EmailStatus.NONE, EmailStatus.PENDING, EmailStatus.PENDING]
    shown_ago(sent)

    run_once()

    [message] = mailbox.received()
    assert sorted(listed(message)) == ["a chat error", "an invoice"]


def test_a_long_digest_lists_the_first_items_and_counts_the_rest(mailbox, reader, settings):
    settings.NOTIFY["EMAIL_DIGEST_MAX_ITEMS"] = 3
    user = reader()
    sent = [notify.send(user, f"item {i}")[0] for i in range(5)]
    shown_ago(sent)

    run_once()

    [message] = mailbox.received()
    text = text_of(message)
    assert [f"item {i}" in text for i in range(5)] == [True, True, True, False, False]
    assert "and 2 more" in text and "and 2 more" in html_of(message)
    assert header(message, "Subject") == "5 unread notifications on example.com"
    assert statuses(sent) == [EmailStatus.SENT] * 5


def test_a_project_overrides_the_templates_the_django_way(mailbox, reader, settings, tmp_path):
    folder = tmp_path / "notify" / "email"
    folder.mkdir(parents=True)
    (folder / "digest_subject.txt").write_text("{{ total }} things\nwaiting at {{ site_name }}\n")
    (folder / "digest.txt").write_text(
        "{% for g in groups %}{% for n in g.notifications %}* {{ n.title }}\n{% endfor %}{% endfor %}"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    user = reader()
    shown_ago(notify.send(user, "overridden"))

    run_once()

    [message] = mailbox.received()
    assert header(message, "Subject") == "1 things waiting at example.com"  # one line, whatever the template
    assert text_of(message) == "* overridden\n"
    assert "Open your inbox" in html_of(message)  # not overridden: notify's own


def test_once_sends_everything_due_pass_after_pass(mailbox, reader, settings):
    settings.NOTIFY["EMAIL_DIGESTS_PER_PASS"] = 2
    users = [reader() for _ in range(5)]
    shown_ago(notify.send(users, "for everyone"))

    assert "Sent 5 digest(s)." in run_once()

    assert sorted(header(m, "To") for m in mailbox.received()) == sorted(u.email for u in users)


def test_a_refused_or_failed_send_is_tried_again_later_and_sent_once(mailbox, smtp, reader, settings):
    user = reader()
    sent = notify.send(user, "keep trying")
    shown_ago(sent)
    mailbox.refuse = "451 4.3.0 Try again later"

    run_once()

    [digest] = Digest.objects.all()
    assert (digest.status, digest.attempts) == ("pending", 1)
    assert digest.retry_at is not None and digest.retry_at > timezone.now()
    assert "451" in digest.last_error
    run_once()  # not before retry_at
    assert Digest.objects.get().attempts == 1

    settings.EMAIL_PORT = SmtpServer().port  # nobody listens there: the server is down
    Digest.objects.update(retry_at=timezone.now())
    run_once()
    assert Digest.objects.get().attempts == 2 and Digest.objects.get().status == "pending"

    settings.EMAIL_PORT = smtp.port
    mailbox.refuse = None
    Digest.objects.update(retry_at=timezone.now())
    run_once()
    run_once()
    [message] = mailbox.received()
    assert header(message, "Message-ID") == digest.message_id
    assert statuses(sent) == [EmailStatus.SENT]


def test_a_digest_waiting_for_a_retry_holds_the_next_one_back(mailbox, reader):
    user = reader()
    first = notify.send(user, "before the outage")
    shown_ago(first)
    mailbox.refuse = "451 4.3.0 Try again later"
    run_once()
    second = notify.send(user, "during the outage")
    shown_ago(second)
    end_window(user)

    run_once()  # the first still waits for its retry: no second digest beside it
    assert Digest.objects.count() == 1

    mailbox.refuse = None
    Digest.objects.update(retry_at=timezone.now())
    run_once()
    [message] = mailbox.received()
    assert listed(message) == ["before the outage"]
    assert statuses(second) == [EmailStatus.PENDING]  # its window starts at the send
    not_before = DigestSchedule.objects.get(user=user).not_before
    assert not_before is not None and not_before > timezone.now() + datetime.timedelta(seconds=3500)


# --- real scheduler processes ----------------------------------------------------------------------------------------


@pytest.fixture
def due_at_once(settings: Any) -> None:
    """This process (which sends) as the scheduler processes are set up: digests on, no delay."""
    settings.NOTIFY = {
        **settings.NOTIFY,
        "EMAIL_DIGESTS": True,
        "EMAIL_DELAY": dict.fromkeys(("info", "success", "warning", "error"), 0),
        "SITE_URL": "https://example.com",
    }


def scheduler_env(smtp_env: dict[str, str], **extra: str) -> dict[str, str]:
    """A scheduler process's environment: digests on, no delay, sending to ``smtp_env``'s server."""
    return {
        **smtp_env,
        "NOTIFY_EMAIL_DIGESTS": "1",
        "NOTIFY_EMAIL_DELAY": json.dumps(dict.fromkeys(("info", "success", "warning", "error"), 0)),
        "NOTIFY_EMAIL_DIGEST_WINDOW": "3600",
        "NOTIFY_SITE_URL": "https://example.com",
        **extra,
    }


@pytest.fixture
def schedulers(smtp: SmtpServer) -> Iterator[Callable[..., Scheduler]]:
    """Starts scheduler processes (``scheduler_env`` plus ``env``; ``smtp_env`` for another mail
    server), each stopped by its PID when the test ends, however it ends."""
    started: list[Scheduler] = []

    def start(*, smtp_env: dict[str, str] | None = None, **env: str) -> Scheduler:
        scheduler = Scheduler(args=["--interval", "0.05"], env=scheduler_env(smtp_env or smtp.env, **env))
        started.append(scheduler)
        return scheduler.start()

    yield start
    for scheduler in started:
        scheduler.stop()


def kill(scheduler: Scheduler) -> None:
    """SIGKILL, by its PID: nothing of it runs on."""
    assert scheduler.process is not None
    os.kill(scheduler.process.pid, signal.SIGKILL)
    assert scheduler.process.wait(10) == -signal.SIGKILL


def next_scheduler_sends(schedulers: Callable[..., Scheduler], mailbox: Mailbox, total: int, **env: str) -> None:
    """A scheduler started after: once the mailbox holds ``total`` messages, a moment for anything
    sent twice to come too, and it stops cleanly."""
    after = schedulers(**env)
    mailbox.wait_for(lambda got: len(got) >= total, what=f"{total} digests in all")
    time.sleep(0.3)
    assert after.stop() == 0


def assert_each_emailed_once(mailbox: Mailbox, sent: dict[Any, list[Notification]]) -> None:
    """One message per user, listing each of their notifications once; every one marked sent."""
    for user, notifications in sent.items():
        [message] = mailbox.to(user.email)
        text = text_of(message)
        titles = Counter(re.findall(r"^- (.+)$", text, re.MULTILINE))
        assert titles == Counter(n.title for n in notifications), (user.email, text)
    assert len(mailbox.received()) == len(sent)
    assert set(Notification.objects.values_list("email_status", flat=True)) == {EmailStatus.SENT}
    assert Counter(Digest.objects.values_list("status", flat=True)) == {"sent": len(sent)}
    assert Counter(header(m, "Message-ID") for m in mailbox.received()) == Counter(
        dict.fromkeys(Digest.objects.values_list("message_id", flat=True), 1)
    )


def test_two_schedulers_at_once_email_each_notification_exactly_once(smtp, schedulers, due_at_once, reader):
    users = [reader() for _ in range(24)]
    pair = [schedulers(NOTIFY_EMAIL_DIGESTS_PER_PASS="4") for _ in range(2)]
    sent: dict[Any, list[Notification]] = {user: [] for user in users}
    with transaction.atomic():  # all due at once
        for i in range(3):
            for notification in notify.send(users, f"news {i}"):
                sent[next(u for u in users if u.pk == notification.recipient_id)].append(notification)
    smtp.mailbox.wait_for(lambda got: len(got) >= len(users), what=f"{len(users)} digests")
    late = notify.send(users, "inside the window")  # due at once too, but for the next digest
    time.sleep(1.0)  # anything sent twice, or a second digest inside the window, would come now

    assert [process.stop() for process in pair] == [0, 0]
    assert statuses(late) == [EmailStatus.PENDING] * len(users)
    Notification.objects.filter(pk__in=[n.pk for n in late]).delete()
    assert_each_emailed_once(smtp.mailbox, sent)
    for process in pair:
        assert "Traceback" not in process.log(), process.log()[-3000:]


def test_an_smtp_server_that_hangs_does_not_hold_reminders_back(schedulers, due_at_once, reader):
    """Digests are sent in a thread of their own: while one waits on an SMTP server that never
    answers (EMAIL_TIMEOUT 4 s), a reminder is delivered at its time."""
    import socket

    from tests.server import free_port

    hung = socket.socket()
    port = free_port()
    hung.bind(("127.0.0.1", port))
    hung.listen(8)  # connections are taken by the kernel, never answered
    smtp_env = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(port), "EMAIL_TIMEOUT": "4"}
    user = reader()
    scheduler = schedulers(smtp_env=smtp_env)
    try:
        notify.send(user, "to email")  # due at once: its digest goes to the hung server
        deadline = time.monotonic() + 5
        while not Digest.objects.filter(leased_until__isnull=False).exists():
            assert time.monotonic() < deadline, scheduler.log()[-2000:]
            time.sleep(0.02)
        deliver_at = timezone.now() + datetime.timedelta(seconds=0.5)
        [reminder] = notify.send(user, "reminder", deliver_at=deliver_at)
        while Notification.objects.get(pk=reminder.pk).seq is None:
            assert timezone.now() < deliver_at + datetime.timedelta(seconds=1.5), "the reminder waited for SMTP"
            time.sleep(0.02)
    finally:
        code = scheduler.stop()
        hung.close()
    assert code == 0
    assert "could not send digest" in scheduler.log()  # the hung send timed out, and will be retried
    assert Digest.objects.get().status == "pending"


class Sends:
    """The barrier of a scheduler started with NOTIFY_TEST_DIGEST_BARRIER (notify/digests.py, notify/outbox.py): its
    sends wait at each point until released; its claims (``hold_claims``) too, or pass freely."""

    def __init__(self, folder: Any, *, hold_claims: bool = False) -> None:
        self.folder = folder
        self.env = {"NOTIFY_TEST_DIGEST_BARRIER": str(folder)}
        for n in range(1, 100):  # what is not held passes at once
            for point in ("leased", "sent") if hold_claims else ():
                self.release(n, point)
            if not hold_claims:
                self.release_claim(n)

    def release_claim(self, n: int) -> None:
        (self.folder / f"claim-{n}-listed.go").touch()

    def reached(self, n: int, point: str) -> bool:
        return (self.folder / f"{n}-{point}.reached").exists()

    def wait(self, n: int, point: str, scheduler: Scheduler, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self.reached(n, point):
            assert scheduler.running, scheduler.log()[-3000:]
            assert time.monotonic() < deadline, f"send {n} never reached {point!r}: {scheduler.log()[-3000:]}"
            time.sleep(0.01)

    def release(self, n: int, point: str) -> None:
        (self.folder / f"{n}-{point}.go").touch()

    def through(self, n: int, scheduler: Scheduler) -> None:
        for point in ("leased", "sent"):
            self.wait(n, point, scheduler)
            self.release(n, point)


def test_a_scheduler_that_listed_a_user_before_another_emailed_them_sends_nothing_inside_the_window(
    smtp, schedulers, due_at_once, reader, tmp_path
):
    """Scheduler 1 lists alice as due, and stops there; scheduler 2 emails her digest; something new
    falls due for her. Scheduler 1 goes on: under her schedule's lock it sees the window, and
    claims nothing (the candidates it listed are stale)."""
    alice = reader()
    sends = Sends(tmp_path, hold_claims=True)
    late = schedulers(**sends.env)
    notify.send(alice, "first")
    deadline = time.monotonic() + 10
    while not (tmp_path / "claim-1-listed.reached").exists():
        assert time.monotonic() < deadline and late.running, late.log()[-3000:]
        time.sleep(0.01)
    schedulers()
    smtp.mailbox.wait_for(lambda got: len(got) == 1, what="the first digest")
    second = notify.send(alice, "second, inside the window")
    sends.release_claim(1)
    time.sleep(1.0)  # a second digest would come now
    assert late.running
    [message] = smtp.mailbox.received()
    assert listed(message) == ["first"]
    assert statuses(second) == [EmailStatus.PENDING]


def test_a_notification_in_a_digest_being_sent_is_not_claimed_again(
    smtp, schedulers, due_at_once, reader, tmp_path, settings
):
    """No window (0): while a scheduler sends alice's digest, another claim finds her time has come
    again; it claims nothing, neither what that digest holds nor what fell due since (that goes
    in the next digest, once this one is sent): each notification in one email, one at a time."""
    settings.NOTIFY["EMAIL_DIGEST_WINDOW"] = 0
    alice = reader()
    sends = Sends(tmp_path)
    sending = schedulers(NOTIFY_EMAIL_DIGEST_WINDOW="0", **sends.env)
    first = notify.send(alice, "first")
    sends.wait(1, "leased", sending)  # claimed, rendered, not sent yet
    assert digests.claim_digests() == 0  # what the digest in flight holds is not claimed again
    second = notify.send(alice, "second")
    assert digests.claim_digests() == 0  # due, but waits for the digest in flight
    sends.release(1, "leased")
    sends.wait(1, "sent", sending)
    sends.release(1, "sent")
    sends.through(2, sending)
    smtp.mailbox.wait_for(lambda got: len(got) == 2, what="two digests")
    time.sleep(0.3)
    assert [listed(m) for m in smtp.mailbox.received()] == [["first"], ["second"]]
    assert statuses([*first, *second]) == [EmailStatus.SENT] * 2


def due_for(users: list[Any]) -> dict[Any, list[Notification]]:
    return {user: notify.send(user, f"for {user.username}") for user in users}


def test_a_scheduler_stopped_mid_pass_sends_the_digest_in_hand_and_the_next_sends_the_rest(
    smtp, schedulers, due_at_once, reader, tmp_path
):
    """SIGTERM while digest 2 of 4 is being sent: it is sent and marked, the scheduler exits 0
    without starting digest 3, and the next scheduler sends 3 and 4; nothing twice."""
    users = [reader() for _ in range(4)]
    sends = Sends(tmp_path)
    sent = due_for(users)
    stopped = schedulers(**sends.env)
    sends.through(1, stopped)
    sends.wait(2, "leased", stopped)
    stopped.ask_to_stop()
    sends.release(2, "leased")
    sends.wait(2, "sent", stopped)
    sends.release(2, "sent")
    assert stopped.process is not None and stopped.process.wait(10) == 0
    assert not sends.reached(3, "leased")
    assert len(smtp.mailbox.received()) == 2
    assert Digest.objects.filter(status="sent").count() == 2

    next_scheduler_sends(schedulers, smtp.mailbox, 4)
    assert_each_emailed_once(smtp.mailbox, sent)


def test_a_scheduler_killed_before_its_send_leaves_the_digest_to_the_next_one(
    smtp, schedulers, due_at_once, reader, tmp_path
):
    """SIGKILL while digest 2 is leased but not sent: the next scheduler sends it once its lease
    lapses (1 s here), and the rest: each user one email."""
    users = [reader() for _ in range(3)]
    sends = Sends(tmp_path)
    sent = due_for(users)
    killed = schedulers(NOTIFY_EMAIL_SEND_LEASE="1", **sends.env)
    sends.through(1, killed)
    sends.wait(2, "leased", killed)
    kill(killed)
    assert len(smtp.mailbox.received()) == 1
    assert Digest.objects.filter(status="pending").count() == 2  # claimed: in the outbox

    next_scheduler_sends(schedulers, smtp.mailbox, 3, NOTIFY_EMAIL_SEND_LEASE="1")
    assert_each_emailed_once(smtp.mailbox, sent)


def test_a_scheduler_killed_after_the_smtp_server_took_it_sends_it_again_with_the_same_message_id(
    smtp, schedulers, due_at_once, reader, tmp_path
):
    """The one window docs/email.md admits: killed after the send, before marking it sent. The
    digest is sent again once its lease lapses, as the same message (Message-ID), and only that one."""
    users = [reader() for _ in range(2)]
    sends = Sends(tmp_path)
    sent = due_for(users)
    killed = schedulers(NOTIFY_EMAIL_SEND_LEASE="1", **sends.env)
    sends.wait(1, "leased", killed)
    sends.release(1, "leased")
    sends.wait(1, "sent", killed)
    kill(killed)
    [first] = smtp.mailbox.received()

    next_scheduler_sends(schedulers, smtp.mailbox, 3, NOTIFY_EMAIL_SEND_LEASE="1")  # the resent one and the other
    ids = Counter(header(m, "Message-ID") for m in smtp.mailbox.received())
    assert ids[header(first, "Message-ID")] == 2 and len(ids) == 2 and sum(ids.values()) == 3
    assert Counter(Digest.objects.values_list("status", flat=True)) == {"sent": 2}
    assert set(Notification.objects.filter(recipient__in=sent).values_list("email_status", flat=True)) == {
        EmailStatus.SENT
    }


# --- unsubscribe ------------------------------------------------------------------------------------------------------

HTML = {"Accept": "text/html,application/xhtml+xml"}
ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def unsubscribe_path(message: Any) -> str:
    link = re.fullmatch(r"<https://example\.com(/notify/unsubscribe/[^>]+)>", header(message, "List-Unsubscribe"))
    assert link is not None, header(message, "List-Unsubscribe")
    return link[1]


def test_the_digest_link_asks_first_and_the_form_unsubscribes(mailbox, reader, server):
    user = reader()
    sent = notify.send(user, "first")
    shown_ago(sent)
    run_once()
    [message] = mailbox.to(user.email)
    path = unsubscribe_path(message)
    assert path in text_of(message) and path in html_of(message)

    # A mail scanner, a link preview, the user: GET shows a form and changes nothing.
    page = server.request("GET", path, headers=HTML)
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in page.body.decode() and page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert server.request("GET", path).json() == {"unsubscribed": False}
    assert preferences.preferences_for(user).email_enabled is True

    done = server.request("POST", path, headers={**HTML, **FORM}, body=ONE_CLICK)  # the form's button
    assert done.status == 200 and "You are unsubscribed" in done.body.decode()
    assert preferences.preferences_for(user).email_enabled is False
    later = notify.send(user, "after unsubscribing")
    shown_ago(later)
    end_window(user)
    run_once()
    assert len(mailbox.to(user.email)) == 1
    assert statuses(later) == [EmailStatus.NONE]


def test_a_one_click_post_from_the_mail_client_unsubscribes_without_cookies_or_csrf(mailbox, reader, server):
    user = reader()
    sent = notify.send(user, "first")
    shown_ago(sent)
    run_once()
    [message] = mailbox.to(user.email)
    pending = notify.send(user, "claimed for the next digest")  # pending when the user unsubscribes
    shown_ago(pending)

    reply = server.request("POST", unsubscribe_path(message), headers=FORM, body=ONE_CLICK)  # RFC 8058

    assert reply.status == 200 and reply.json() == {"unsubscribed": True}
    assert preferences.preferences_for(user).email_enabled is False
    end_window(user)
    run_once()
    assert len(mailbox.received()) == 1
    assert statuses(pending) == [EmailStatus.NONE]
    # Twice is fine: the same answer, nothing else changes.
    assert server.request("POST", unsubscribe_path(message), headers=FORM, body=ONE_CLICK).status == 200


def test_a_forged_or_cut_unsubscribe_token_is_refused(reader, server):
    from django.core import signing

    from notify.mail import make_token

    alice, bob = reader(), reader()
    good = make_token(alice.pk)
    forged = [
        f"{bob.pk}:{good.split(':', 1)[1]}",  # alice's signature on bob's id
        good[:-3],  # cut short
        signing.Signer(salt="another.salt").sign(str(alice.pk)),  # signed, but not for this
        f"{alice.pk}",
        "not-a-token",
    ]
    for token in forged:
        path = f"/notify/unsubscribe/{token}"
        page = server.request("GET", path, headers=HTML)
        assert page.status == 400 and "This link is not valid" in page.body.decode(), token
        for headers in (HTML, {}):
            refused = server.request("POST", path, headers={**headers, **FORM}, body=ONE_CLICK)
            assert refused.status == 400, token
        body = expect_error(server.request("POST", path, headers=FORM, body=ONE_CLICK), 400, "bad_token")
        assert "not valid" in body["detail"]
    assert preferences.preferences_for(alice).email_enabled is True
    assert preferences.preferences_for(bob).email_enabled is True
    wrong_method = server.request("PUT", f"/notify/unsubscribe/{good}")
    expect_error(wrong_method, 405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "GET, HEAD, POST"
