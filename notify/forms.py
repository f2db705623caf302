from django import forms

from notify.models import Level


class NotificationForm(forms.Form):
    """What staff fill in to notify the users they selected in the admin."""

    title = forms.CharField(max_length=200)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    level = forms.ChoiceField(choices=Level.choices, initial=Level.INFO)
    url = forms.CharField(
        label="Link", max_length=500, required=False, help_text="Where the notification leads, e.g. /orders/42/"
    )
