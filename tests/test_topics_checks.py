"""System checks of the topic settings: one test per check id, as in tests/test_checks.py."""

from __future__ import annotations

import pytest
from django.test import override_settings

from notify.checks import check_settings


def ids(**notify) -> list[str]:
    with override_settings(NOTIFY=notify):
        return [problem.id for problem in check_settings()]


def test_topic_defaults_and_a_valid_hook_pass():
    assert (
        ids(
            TOPIC_PERMISSION="project.demo.topics.can_use",
            TOPIC_RETENTION={"*": {"keep_last": 10}, "room:*": {"keep_last": None, "keep_seconds": 3600}},
        )
        == []
    )


@pytest.mark.parametrize(
    "rules",
    [
        [("*", 10)],
        {"": {"keep_last": 1}},
        {"*": 10},
        {"*": {"keep_first": 1}},
        {"*": {"keep_last": 0}},
        {"*": {"keep_last": 2.5}},
        {"*": {"keep_last": True}},
        {"*": {"keep_seconds": -1}},
        {"*": {"keep_seconds": "1h"}},
    ],
)
def test_e010_topic_retention_must_be_patterns_to_rules(rules):
    assert ids(TOPIC_RETENTION=rules) == ["notify.E010"]


@pytest.mark.parametrize("path", [42, "no.such.module.hook", "project.demo.topics.missing", "notify.conf.DEFAULTS"])
def test_e011_topic_permission_must_import_a_callable(path):
    assert ids(TOPIC_PERMISSION=path) == ["notify.E011"]
