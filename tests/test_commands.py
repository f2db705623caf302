"""The management commands, as an operator runs them."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest
from django.core.management import CommandError, call_command

from notify.models import ApiToken, Notification


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_notify_send_answers_a_held_poll(server, make_user, token_for):
    alice = make_user("alice")
    token = token_for(alice)
    cursor = server.poll(token).json()["cursor"]
    result = []
    poller = threading.Thread(target=lambda: result.append(server.poll(token, after=cursor, timeout=20).json()))
    poller.start()
    output = run(
        "notify_send", "alice", "Deploy finished", "--body", "v2 is live", "--level", "success", "--url", "/deploys/2"
    )
    poller.join(10)
    assert "Sent notification" in output
    [got] = result[0]["notifications"]
    assert (got["title"], got["body"], got["level"], got["url"]) == (
        "Deploy finished",
        "v2 is live",
        "success",
        "/deploys/2",
    )


def test_notify_send_refuses_an_unknown_user(transactional_db):
    with pytest.raises(CommandError, match="No user with username 'nobody'"):
        run("notify_send", "nobody", "x")
    assert not Notification.objects.exists()


def test_notify_send_says_what_the_users_preferences_made_of_it(make_user, settings):
    from notify import preferences

    carol = make_user("carol")
    preferences.set_rule(carol, kind="ci", page=False, email=False)
    assert run("notify_send", "carol", "Build failed", "--kind", "ci.build") == (
        "Not sent: carol's preferences want this kind and level nowhere.\n"
    )
    settings.NOTIFY = {**settings.NOTIFY, "EMAIL_DIGESTS": True}
    preferences.set_rule(carol, kind="ci", page=False, email=True)
    output = run("notify_send", "carol", "Build failed", "--kind", "ci.build")
    [stored] = Notification.objects.filter(recipient=carol)
    assert output == f"Stored notification {stored.pk} for carol's next email digest (their preferences).\n"
    assert (stored.page, stored.seq) == (False, None)


def test_notify_token_prints_a_working_token_alone_on_the_last_line(server, make_user):
    make_user("bob")
    token = run("notify_token", "bob", "--name", "laptop").strip().splitlines()[-1]
    assert server.poll(token).status == 200
    stored = ApiToken.objects.get(name="laptop")
    secret = token.split("_", 2)[2]  # ntf_<key>_<secret>; the secret may hold "_" too
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()  # only a hash is kept


def test_notify_token_revoke_stops_the_token_at_once(server, make_user):
    make_user("carol")
    token = run("notify_token", "carol").strip().splitlines()[-1]
    assert server.poll(token).status == 200  # now in the token cache
    assert "Revoked 1 token(s)" in run("notify_token", "carol", "--revoke")
    assert server.poll(token).status == 401
