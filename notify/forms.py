from typing import Any

from django import forms

from notify.conf import conf
from notify.models import KIND_MAX_LENGTH, KIND_RULE, Broadcast, Level, check_kind
from notify.sending import check_content


class CheckedContent:
    """A form whose title, body and url become a notification: refused with a form error, not a
    500, when ``notify.send()`` would refuse them (MAX_NOTIFICATION_BYTES, NUL characters)."""

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]  # a Form's
        try:
            check_content(cleaned.get("title", ""), cleaned.get("body", ""), cleaned.get("url", ""), {})
        except (TypeError, ValueError) as problem:
            raise forms.ValidationError(str(problem)) from None
        return cleaned


class NotificationForm(CheckedContent, forms.Form):
    """What staff fill in to notify the users they selected in the admin."""

    title = forms.CharField(max_length=200)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    level = forms.ChoiceField(choices=Level.choices, initial=Level.INFO)
    url = forms.CharField(
        label="Link", max_length=500, required=False, help_text="Where the notification leads, e.g. /orders/42/"
    )
    kind = forms.CharField(max_length=KIND_MAX_LENGTH, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What the recipients' preferences choose by (docs/preferences.md): the project's kinds.
        offered = ", ".join(conf.PREFERENCE_KINDS) or "none declared in PREFERENCE_KINDS"
        self.fields["kind"].help_text = f"Its kind, which users' preferences choose by ({offered}); blank for none."

    def clean_kind(self) -> str:
        try:
            return check_kind(self.cleaned_data["kind"])
        except ValueError:
            raise forms.ValidationError(f"A kind is {KIND_RULE}.") from None


class BroadcastForm(CheckedContent, forms.ModelForm):
    class Meta:
        model = Broadcast
        fields = ["title", "body", "level", "url", "groups"]
