"""Production profile: ``DJANGO_SETTINGS_MODULE=project.settings_production``.

Everything of project.settings, plus what ``manage.py check --deploy`` asks for.
It refuses to start without DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS, so a
forgotten variable fails loudly instead of running with a development default.
TLS is expected to end at the proxy in front (see deploy docs), which sets
X-Forwarded-Proto.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from project.settings import *  # noqa: F403

DEBUG = False

for required in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"):
    if not os.environ.get(required):
        raise ImproperlyConfigured(f"Set {required} in the environment for the production profile.")
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
ALLOWED_HOSTS = [host for host in os.environ["DJANGO_ALLOWED_HOSTS"].split(",") if host]

# The digest's links (docs/email.md) lead to the site's real address, never the demo's default:
# with NOTIFY_EMAIL_DIGESTS=1 and no NOTIFY_SITE_URL, notify.E044 stops the start.
NOTIFY["SITE_URL"] = os.environ.get("NOTIFY_SITE_URL") or None  # noqa: F405

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", 60 * 60 * 24 * 365))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
