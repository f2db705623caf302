"""One test per system check id: misconfiguration is reported with the fix."""

from __future__ import annotations

import pytest
from django.test import override_settings

from notify.checks import check_settings


def ids(**notify) -> list[str]:
    with override_settings(NOTIFY=notify):
        return [problem.id for problem in check_settings()]


def test_defaults_pass():
    assert ids() == []


def test_e001_notify_must_be_a_dict():
    with override_settings(NOTIFY=["redis"]):
        assert [p.id for p in check_settings()] == ["notify.E001"]


def test_e002_unknown_keys():
    assert ids(TIMEOUT=5) == ["notify.E002"]


def test_e003_unknown_broker():
    assert ids(BROKER="kafka") == ["notify.E003"]


def test_e004_redis_url_must_be_a_redis_url():
    assert ids(REDIS_URL="http://127.0.0.1:6379") == ["notify.E004"]


@pytest.mark.parametrize("value", [0, -1, "25", None, True])
def test_e005_timeouts_must_be_positive_numbers(value):
    assert ids(MAX_TIMEOUT=value) == ["notify.E005"]


@pytest.mark.parametrize("name", ["UNSUBSCRIBE_DELAY", "CREDENTIAL_TRUST_SECONDS"])
@pytest.mark.parametrize("value", [-1, "300", None, True])
def test_e005_delays_must_be_seconds_zero_or_more(name, value):
    assert ids(**{name: value}) == ["notify.E005"]
    assert ids(**{name: 0}) == []


@pytest.mark.parametrize("value", [0, 2.5, "10", True])
def test_e006_counts_must_be_whole_numbers(value):
    assert ids(MAX_POLLS_PER_USER=value) == ["notify.E006"]


def test_e007_default_timeout_above_maximum():
    assert ids(DEFAULT_TIMEOUT=90, MAX_TIMEOUT=60) == ["notify.E007"]


def test_e008_default_limit_above_maximum():
    assert ids(DEFAULT_LIMIT=200) == ["notify.E008"]


@pytest.mark.parametrize("name", ["HISTORY_DEFAULT_LIMIT", "HISTORY_MAX_LIMIT"])
@pytest.mark.parametrize("value", [0, 2.5, "10", True, None])
def test_e006_history_limits_must_be_whole_numbers(name, value):
    assert ids(**{name: value}) == ["notify.E006"]


def test_e021_history_default_limit_above_maximum():
    assert ids(HISTORY_DEFAULT_LIMIT=50, HISTORY_MAX_LIMIT=40) == ["notify.E021"]
    assert ids(HISTORY_DEFAULT_LIMIT=40, HISTORY_MAX_LIMIT=40) == []


def test_e022_history_max_limit_has_a_ceiling():
    assert ids(HISTORY_MAX_LIMIT=1001) == ["notify.E022"]
    assert ids(HISTORY_MAX_LIMIT=1000) == []


def test_e009_cache_alias_must_exist():
    assert ids(CACHE_ALIAS="tokens") == ["notify.E009"]


@pytest.mark.parametrize("value", [0, 257, 2.5, "32", True, None])
def test_e013_max_json_depth_must_be_a_whole_number_from_1_to_256(value):
    assert ids(MAX_JSON_DEPTH=value) == ["notify.E013"]
    assert ids(MAX_JSON_DEPTH=1) == ids(MAX_JSON_DEPTH=256) == []


def test_w001_memory_broker_is_single_process():
    assert ids(BROKER="memory") == ["notify.W001"]


def test_w002_sessions_need_authentication_middleware():
    with override_settings(MIDDLEWARE=[]):
        assert [p.id for p in check_settings()] == ["notify.W002"]


@pytest.mark.parametrize("value", [0, "many", 1.5])
def test_e006_max_held_polls_must_be_none_or_a_whole_number(value):
    assert ids(MAX_HELD_POLLS=value) == ["notify.E006"]


def test_max_held_polls_defaults_below_the_open_file_limit():
    import resource

    from notify.conf import conf

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    with override_settings(NOTIFY={}):
        assert max(16, soft - 256) == conf.MAX_HELD_POLLS


@pytest.mark.parametrize("value", [0, -1, "1", None])
def test_e005_health_timeout_must_be_a_positive_number(value):
    assert ids(HEALTH_TIMEOUT=value) == ["notify.E005"]


@pytest.mark.parametrize(
    "settings", [{"METRICS": 1}, {"METRICS": "yes"}, {"METRICS_TOKEN": "short"}, {"METRICS_TOKEN": 5}]
)
def test_e023_metrics_must_be_a_bool_and_the_token_long_enough(settings):
    assert ids(**settings) == ["notify.E023"]
    assert ids(METRICS=True, METRICS_TOKEN="a-token-of-enough-length") == []


@pytest.mark.parametrize("value", [0, -1, "10", None, True])
def test_e005_presence_ttl_must_be_positive_seconds(value):
    assert ids(PRESENCE_TTL=value) == ["notify.E005"]
    assert ids(PRESENCE_TTL=0.5) == []


@pytest.mark.parametrize(
    "settings",
    [
        {"PRESENCE": "yes"},
        {"PRESENCE": 1},
        {"MAX_PRESENCE": 0},
        {"MAX_PRESENCE": 10_001},
        {"MAX_PRESENCE": 2.5},
        {"MAX_PRESENCE": True},
    ],
)
def test_e030_presence_is_a_bool_and_max_presence_bounded(settings):
    assert ids(**settings) == ["notify.E030"]
    assert ids(PRESENCE=True, MAX_PRESENCE=10_000) == ids(MAX_PRESENCE=1) == []


@pytest.mark.parametrize("value", [0, 0.05, 61, "2", None, True])
def test_e031_dashboard_interval_is_bounded(value):
    assert ids(DASHBOARD_INTERVAL=value) == ["notify.E031"]
    assert ids(DASHBOARD_INTERVAL=0.1) == ids(DASHBOARD_INTERVAL=60) == []


def test_e040_email_digests_must_be_a_bool():
    assert ids(EMAIL_DIGESTS="yes", SITE_URL="https://example.com") == ["notify.E040"]


@pytest.mark.parametrize(
    "delay",
    [[300], {"urgent": 60}, {"error": -1}, {"error": "300"}, {"error": True}],
)
def test_e041_email_delay_is_seconds_or_none_per_known_level(delay):
    assert ids(EMAIL_DELAY=delay) == ["notify.E041"]
    assert ids(EMAIL_DELAY={"error": 0, "info": 3600.5, "warning": None}) == []


@pytest.mark.parametrize("value", [-1, "3600", None, True])
def test_e042_email_digest_window_is_seconds(value):
    assert ids(EMAIL_DIGEST_WINDOW=value) == ["notify.E042"]
    assert ids(EMAIL_DIGEST_WINDOW=0) == []


@pytest.mark.parametrize("name", ["EMAIL_DIGEST_MAX_ITEMS", "EMAIL_DIGESTS_PER_PASS"])
@pytest.mark.parametrize("value", [0, 2.5, "10", True, 10**6])
def test_e043_digest_counts_are_bounded(name, value):
    assert ids(**{name: value}) == ["notify.E043"]


def test_e044_site_url_is_needed_by_digests_and_must_be_a_url():
    assert ids(EMAIL_DIGESTS=True) == ["notify.E044"]
    assert ids(EMAIL_DIGESTS=True, SITE_URL="https://example.com") == []
    for bad in ("example.com", "ftp://example.com", "https://example.com/?a=1", 42):
        assert ids(SITE_URL=bad) == ["notify.E044"], bad


@pytest.mark.parametrize("value", ["inbox/", "//evil.example.com/", "https://example.com/inbox/", None])
def test_e045_inbox_url_is_a_path(value):
    assert ids(INBOX_URL=value) == ["notify.E045"]


@pytest.mark.parametrize("value", ["", "noreply", 42])
def test_e046_email_from_is_an_address_or_none(value):
    assert ids(EMAIL_FROM=value) == ["notify.E046"]
    assert ids(EMAIL_FROM="Example <noreply@example.com>") == []


@pytest.mark.parametrize("value", [0, -5, "600", True])
def test_e047_email_send_lease_is_positive_seconds(value):
    assert ids(EMAIL_SEND_LEASE=value) == ["notify.E047"]
