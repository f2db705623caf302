"""notify.db: the poll path's database threads."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from notify import db

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_read_whose_connection_broke_is_asked_once_more():
    # As after a database restart: the thread's idle connection fails its next query.
    calls = []

    def read_after_restart():
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("terminating connection due to administrator command")
        return "answer"

    assert await db.read(read_after_restart) == "answer"
    assert len(calls) == 2


async def test_a_database_that_keeps_failing_is_not_asked_a_third_time_and_writes_are_not_repeated():
    calls = []

    def failing():
        calls.append(1)
        raise OperationalError("the database is down")

    with pytest.raises(OperationalError):
        await db.read(failing)
    assert len(calls) == 2
    with pytest.raises(OperationalError):
        await db.run(failing)  # a write may have happened: never repeated
    assert len(calls) == 3
