"""``/preferences/``: the demo's page where a user chooses what they get, where, and when.

A table of rows (everything; each kind of NOTIFY["PREFERENCE_KINDS"]; each level), each
with "in the page" and "by email"; email on or off, and quiet hours. Saved as rules
through notify.preferences: a row that says the same as "Everything else" is not stored,
so that the rows of the levels still apply to that kind (a rule naming a kind wins over
one naming only a level: docs/preferences.md).
"""

from __future__ import annotations

import zoneinfo
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from notify import preferences
from notify.conf import conf
from notify.models import Level
from notify.preferences import Delivery, Rule

LEVEL_LABELS = {"info": "Information", "success": "Successes", "warning": "Warnings", "error": "Errors"}
# The time zones the page offers: every IANA name this machine knows.
TIMEZONES = sorted(zoneinfo.available_timezones())


def rows() -> list[tuple[str, str, str]]:
    """(kind, level, label) of each row, "Everything else" first."""
    found = [("", "", "Everything else")]
    found += [(kind, "", label) for kind, label in conf.PREFERENCE_KINDS.items()]
    found += [("", level, f"{LEVEL_LABELS.get(level, level)} of any kind") for level in Level.values]
    return found


def field_name(channel: str, kind: str, level: str) -> str:
    return f"{channel}:{kind}:{level}"


class PreferencesForm(forms.Form):
    email_enabled = forms.BooleanField(label="Send me email digests", required=False)
    quiet_start = forms.TimeField(label="Quiet from", required=False, widget=forms.TimeInput(attrs={"type": "time"}))
    quiet_end = forms.TimeField(label="until", required=False, widget=forms.TimeInput(attrs={"type": "time"}))
    timezone = forms.ChoiceField(label="Time zone", required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, label_suffix="", **kwargs)
        self.fields["timezone"].choices = [("", "The site's")] + [(name, name) for name in TIMEZONES]
        for kind, level, label in rows():
            for channel in ("page", "email"):
                self.fields[field_name(channel, kind, level)] = forms.BooleanField(label=label, required=False)
        if not conf.EMAIL_DIGESTS:
            # Nothing to choose about email: shown greyed, and what is stored is kept as it is
            # (a disabled field takes its initial value, whatever is posted).
            for name, field in self.fields.items():
                if name.startswith("email") or name in ("quiet_start", "quiet_end", "timezone"):
                    field.disabled = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if (cleaned.get("quiet_start") is None) != (cleaned.get("quiet_end") is None):
            raise forms.ValidationError("Give quiet hours both a start and an end, or neither.")
        return cleaned

    def table(self) -> list[tuple[str, forms.BoundField, forms.BoundField]]:
        return [
            (label, self[field_name("page", kind, level)], self[field_name("email", kind, level)])
            for kind, level, label in rows()
        ]

    @classmethod
    def initial_from(cls, prefs: preferences.Preferences) -> dict[str, Any]:
        initial: dict[str, Any] = {
            "email_enabled": prefs.email_enabled,
            "quiet_start": prefs.quiet_start,
            "quiet_end": prefs.quiet_end,
            "timezone": prefs.timezone,
        }
        everything = stored_or_everywhere(prefs, "", "")
        for kind, level, _ in rows():
            # A row without a rule of its own shows what "Everything else" says.
            delivery = stored_or_everywhere(prefs, kind, level) if (kind, level) in stored(prefs) else everything
            initial[field_name("page", kind, level)] = delivery.page
            initial[field_name("email", kind, level)] = delivery.email
        return initial

    def rules(self) -> list[Rule]:
        """The rules to store: "Everything else" if it is not the default, and every row that differs from it."""
        data = self.cleaned_data

        def delivery(kind: str, level: str) -> Delivery:
            return Delivery(page=data[field_name("page", kind, level)], email=data[field_name("email", kind, level)])

        everything = delivery("", "")
        found = [Rule("", "", everything)] if everything != Delivery(page=True, email=True) else []
        found += [
            Rule(kind, level, delivery(kind, level))
            for kind, level, _ in rows()[1:]
            if delivery(kind, level) != everything
        ]
        return found


def stored(prefs: preferences.Preferences) -> set[tuple[str, str]]:
    return {(rule.kind, rule.level) for rule in prefs.rules}


def stored_or_everywhere(prefs: preferences.Preferences, kind: str, level: str) -> Delivery:
    for rule in prefs.rules:
        if (rule.kind, rule.level) == (kind, level):
            return rule.delivery
    return Delivery(page=True, email=True)


@login_required
def preferences_page(request: HttpRequest) -> HttpResponse:
    prefs = preferences.preferences_for(request.user)
    form = PreferencesForm(request.POST or None, initial=PreferencesForm.initial_from(prefs))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        preferences.replace_rules(request.user, form.rules())
        quiet = (data["quiet_start"], data["quiet_end"]) if data["quiet_start"] is not None else None
        preferences.update_preferences(
            request.user, email_enabled=data["email_enabled"], quiet_hours=quiet, timezone_name=data["timezone"]
        )
        messages.success(request, "Preferences saved.")
        return redirect("preferences")
    context = {"form": form, "email_available": conf.EMAIL_DIGESTS}
    return render(request, "demo/preferences.html", context)
