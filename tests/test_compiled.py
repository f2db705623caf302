"""notify.compiled: the ORM's own SQL, compiled once per list length, gives the ORM's rows."""

from __future__ import annotations

import pytest
from django.db.models import Count

import notify
from notify.compiled import MAX_IDS, CompiledQuery
from notify.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)


def unread_query(ids):  # type: ignore[no-untyped-def]
    return (
        Notification.objects.filter(recipient_id__in=ids).unread().values_list("recipient_id").annotate(n=Count("pk"))
    )


@pytest.mark.parametrize("how_many", [1, 2, 3, 5, 8, 33])
def test_rows_match_the_orm_whatever_the_number_of_ids(make_user, how_many):
    users = [make_user() for _ in range(how_many)]
    for number, user in enumerate(users):
        for _ in range(number % 3):
            notify.send(user, "x")
    Notification.objects.filter(recipient=users[-1]).mark_read()
    ids = [user.pk for user in users]
    query = CompiledQuery("notify.Notification", unread_query)

    assert sorted(query(ids)) == sorted(unread_query(ids))
    assert sorted(query(ids[:1])) == sorted(unread_query(ids[:1]))  # a second shape, same query object
    assert query([]) == []


def test_more_ids_than_one_query_takes_is_refused():
    with pytest.raises(ValueError, match=str(MAX_IDS)):
        CompiledQuery("notify.Notification", unread_query)(list(range(MAX_IDS + 1)))


def test_a_query_whose_ids_are_not_plain_parameters_is_refused():
    query = CompiledQuery("notify.Notification", lambda ids: Notification.objects.filter(pk__in=ids[:1]))
    with pytest.raises(RuntimeError, match="not plain parameters"):
        query([1, 2])
