"""``/notify/preferences``: a user's preferences as JSON, read and changed with the poll's auth.

``GET`` answers them; ``POST`` changes what its JSON object names (``email_enabled``,
``quiet_hours``, ``timezone``, ``rules``: the whole list, replaced) and answers the
result. Everything is validated before anything is written. docs/preferences.md is the
contract, notify/openapi.json its machine-readable form.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from notify import db, preferences
from notify.auth import authenticate
from notify.conf import conf
from notify.limits import count_preference_change
from notify.models import Level, check_timezone
from notify.params import BadRequest, load_json, query_of
from notify.preferences import Delivery, Rule
from notify.views import ANSWERED, answer, answer_error, authenticated_post, method_not_allowed

ACCEPTED = (
    'Send a JSON object with any of: "email_enabled" (true or false), "quiet_hours" ({"start": "HH:MM", '
    '"end": "HH:MM"} or null), "timezone" (an IANA name such as "Europe/Paris", or ""), "rules" (a list of '
    '{"kind": "...", "level": "...", "page": true|false, "email": true|false}, which replaces the rules).'
)
RULE_KEYS = {"kind", "level", "page", "email"}
# Bounds what a POST may carry before it is parsed: the rules and their envelope.
MAX_BODY_DEPTH = 4


def described(prefs: preferences.Preferences) -> dict[str, Any]:
    """The answer: the user's preferences, and what the project offers to choose from."""
    return {
        **prefs.as_dict(),
        "email_available": conf.EMAIL_DIGESTS,
        "levels": list(Level.values),
        "kinds": [{"kind": kind, "label": label} for kind, label in conf.PREFERENCE_KINDS.items()],
    }


def _time(raw: Any, name: str) -> datetime.time:
    if isinstance(raw, str) and len(raw) == 5 and raw[2] == ":" and raw.replace(":", "").isdigit():
        try:
            return datetime.time(int(raw[:2]), int(raw[3:]))
        except ValueError:
            pass
    raise BadRequest("invalid_body", f'quiet_hours.{name} must be a time as "HH:MM" (00:00 to 23:59), got {raw!r:.40}.')


def _rule(raw: Any, index: int) -> Rule:
    if not isinstance(raw, dict) or not set(raw) <= RULE_KEYS:
        raise BadRequest(
            "invalid_body",
            f"rules[{index}] must be an object with only the keys kind, level, page and email. {ACCEPTED}",
        )
    kind, level = raw.get("kind", ""), raw.get("level", "")
    page, email = raw.get("page", True), raw.get("email", True)
    if not isinstance(page, bool) or not isinstance(email, bool):
        raise BadRequest("invalid_body", f"rules[{index}]: page and email must be true or false.")
    if not isinstance(kind, str) or not isinstance(level, str):
        raise BadRequest("invalid_body", f"rules[{index}]: kind and level must be strings ('' for every one).")
    return Rule(kind, level, Delivery(page=page, email=email))


def parse_changes(body: bytes) -> dict[str, Any]:
    """What a POST changes, as keyword arguments of notify.preferences (``rules``: a list of Rule)."""
    payload = load_json(body, max_depth=MAX_BODY_DEPTH, accepted=ACCEPTED)
    if not isinstance(payload, dict) or not payload:
        raise BadRequest("invalid_body", f"The body must be a non-empty JSON object. {ACCEPTED}")
    unknown = sorted(set(payload) - {"email_enabled", "quiet_hours", "timezone", "rules"})
    if unknown:
        raise BadRequest("invalid_body", f"Unknown key {unknown[0][:40]!r}. {ACCEPTED}")
    changes: dict[str, Any] = {}
    if "email_enabled" in payload:
        if not isinstance(payload["email_enabled"], bool):
            raise BadRequest("invalid_body", "email_enabled must be true or false.")
        changes["email_enabled"] = payload["email_enabled"]
    if "quiet_hours" in payload:
        quiet = payload["quiet_hours"]
        if quiet is None:
            changes["quiet_hours"] = None
        elif isinstance(quiet, dict) and set(quiet) == {"start", "end"}:
            changes["quiet_hours"] = (_time(quiet["start"], "start"), _time(quiet["end"], "end"))
        else:
            raise BadRequest("invalid_body", 'quiet_hours must be {"start": "HH:MM", "end": "HH:MM"} or null.')
    if "timezone" in payload:
        try:
            changes["timezone_name"] = check_timezone(payload["timezone"])
        except (TypeError, ValueError) as problem:
            raise BadRequest("invalid_body", str(problem)) from None
    if "rules" in payload:
        raw = payload["rules"]
        if not isinstance(raw, list):
            raise BadRequest("invalid_body", f"rules must be a list. {ACCEPTED}")
        if len(raw) > conf.MAX_PREFERENCE_RULES:
            raise BadRequest("too_many_rules", f"{len(raw)} rules; at most {conf.MAX_PREFERENCE_RULES} are accepted.")
        changes["rules"] = [_rule(rule, index) for index, rule in enumerate(raw)]
    return changes


def change(user_id: int, changes: dict[str, Any]) -> preferences.Preferences:
    """Write ``changes`` (all validated by ``replace_rules`` before anything is written)."""
    from django.db import transaction

    rules = changes.pop("rules", None)
    with transaction.atomic():
        if rules is not None:
            preferences.replace_rules(user_id, rules)
        return preferences.update_preferences(user_id, **changes)


async def _post(user_id: int, body: bytes) -> dict[str, Any]:
    changes = parse_changes(body)
    await count_preference_change(user_id)  # a refused body costs no budget
    try:
        changed = await db.run(change, user_id, changes)
    except (TypeError, ValueError) as problem:  # a kind or level refused by notify.preferences
        raise BadRequest("invalid_body", str(problem)) from None
    return described(changed)


@csrf_exempt  # enforced in authenticated_post for session auth only: a bearer token is not ambient
async def preferences_view(request: HttpRequest) -> JsonResponse:
    """``GET /notify/preferences``: the user's preferences; ``POST``: change them."""
    if request.method == "POST":
        return await authenticated_post(request, _post)
    if request.method != "GET":
        return method_not_allowed("GET, POST")
    try:
        query_of(request)  # refuses a flood of parameters, which nothing else here would read
        user_id, _ = await authenticate(request)
        return answer(described(await db.read(preferences.preferences_for, user_id)))
    except ANSWERED as problem:
        return answer_error(problem)
