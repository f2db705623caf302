"""Issue 13, case 11: a token look-up racing the end of the token must not cache it alive.

The interleaving, made exact: a look-up misses the token cache and reads the token's row
from the database; then the token ends (revoked, deleted, or its user deactivated) and
that commits, and its post-commit cache drop runs; only then does the look-up write what
it read to the cache. Before the fix the revoked token was then served from the cache —
by every worker sharing it — for TOKEN_CACHE_SECONDS.

The look-up runs here, in the test's thread, with the real Redis cache the server shares;
the cache's ``set_many`` is wrapped so that the token ends just before the look-up's write
goes through (no sleeps). Then a real uvicorn server is asked over HTTP with the token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import caches

from notify import auth
from notify.conf import conf
from notify.models import ApiToken
from tests.server import expect_error

pytestmark = pytest.mark.django_db(transaction=True)


class EndsTheTokenBeforeWriting:
    """The cache as the look-up sees it, ending the token (committed, its post-commit drop
    run) just before the look-up's write of what it read from the database."""

    def __init__(self, end: Callable[[], None]) -> None:
        self.real = caches[conf.CACHE_ALIAS or "default"]
        self.end = end
        self.writes = 0

    def set_many(self, *args: Any, **kwargs: Any) -> Any:
        if self.writes == 0:
            self.end()
        self.writes += 1
        return self.real.set_many(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def revoke(token: ApiToken) -> None:
    token.revoke()


def delete(token: ApiToken) -> None:
    token.delete()


def deactivate(token: ApiToken) -> None:
    token.user.is_active = False
    token.user.save()


@pytest.mark.parametrize("end", [revoke, delete, deactivate])
def test_a_token_ended_while_its_look_up_was_between_the_database_and_the_cache_is_refused(
    server, alice, token, end, monkeypatch
):
    row = ApiToken.objects.get(user=alice)
    racing = EndsTheTokenBeforeWriting(lambda: end(row))
    monkeypatch.setattr(auth, "_cache", lambda: racing)

    # The look-up read the row before the end committed: it answers what it read.
    assert auth.user_id_for_token(token) == alice.pk
    assert racing.writes == 1  # it did write, after the post-commit drop
    ended = not ApiToken.objects.active().filter(pk=row.pk, user__is_active=True).exists()
    assert ended
    monkeypatch.undo()

    # What it wrote must not make the ended token work again: not here, not in another worker.
    assert auth.user_id_for_token(token) is None
    expect_error(server.poll(token), 401, "not_authenticated")
    expect_error(server.poll(token, after="0", timeout="1"), 401, "not_authenticated")


def test_a_token_look_up_is_still_answered_from_the_cache(alice, token, monkeypatch):
    assert auth.user_id_for_token(token) == alice.pk  # cached now
    monkeypatch.setattr(ApiToken.objects, "active", lambda: pytest.fail("the cache was not used"))
    assert auth.user_id_for_token(token) == alice.pk
