"""One-click unsubscribe from digests: ``/notify/unsubscribe/<token>`` (docs/email.md#unsubscribe).

The token (notify.mail.make_token) is the user's id signed with SECRET_KEY
(``django.core.signing``, a salt of its own), so only whoever has the email can turn
that user's email off. It never expires: a link in a digest months old must still work
(mail providers and the law expect an unsubscribe link to keep working), and all it
can do is turn email off, which the user can turn on again. Rotating SECRET_KEY
(keeping the old one in SECRET_KEY_FALLBACKS for a while) retires old links.

GET only shows a confirmation form: mail scanners and link previewers follow links, and
must not unsubscribe anyone. POST turns email off: from that form, or straight from the
mail client (RFC 8058: ``List-Unsubscribe=One-Click``, no cookies). It is exempt from CSRF
on purpose: the mail client's POST carries no CSRF token, and a forged cross-site POST
needs the signed token in the URL, which only the mailbox holds; at worst it turns email
off for that user.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from notify.mail import user_id_from

TEMPLATE = "notify/unsubscribe.html"


def _wants_html(request: HttpRequest) -> bool:
    # A browser (the link, the confirm form) asks for HTML; a mail client's one-click POST
    # does not, and gets JSON.
    return "text/html" in request.headers.get("Accept", "")


def _answer(request: HttpRequest, status: int, state: str, body: dict[str, str | bool]) -> HttpResponse:
    if _wants_html(request):
        response: HttpResponse = render(request, TEMPLATE, {"state": state}, status=status)
    else:
        response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    # The token is in this page's URL: never send it on as a Referer.
    response["Referrer-Policy"] = "no-referrer"
    return response


@csrf_exempt  # see the module docstring: the signed token is the credential
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD", "POST"):
        response = _answer(
            request,
            405,
            "invalid",
            {
                "error": "method_not_allowed",
                "detail": f"{request.method} is not accepted: GET shows, POST unsubscribes.",
            },
        )
        response["Allow"] = "GET, HEAD, POST"
        return response
    user_id = user_id_from(token)
    if user_id is None:
        return _answer(
            request,
            400,
            "invalid",
            {
                "error": "bad_token",
                "detail": "This unsubscribe link is not valid (altered or cut short): use the link of a recent email.",
            },
        )
    if request.method != "POST":
        return _answer(request, 200, "confirm", {"unsubscribed": False})
    if get_user_model()._default_manager.filter(pk=user_id).exists():
        from notify.preferences import update_preferences

        update_preferences(user_id, email_enabled=False)
    return _answer(request, 200, "done", {"unsubscribed": True})
