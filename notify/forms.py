from typing import Any

from django import forms

from notify.models import Broadcast, Level
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


class BroadcastForm(CheckedContent, forms.ModelForm):
    class Meta:
        model = Broadcast
        fields = ["title", "body", "level", "url", "groups"]
