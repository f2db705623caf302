"""Settings for a server that answers cross-origin polls: the demo's, plus django-cors-headers as a
project would configure it (tests/browser/test_cors.py). Any port of 127.0.0.1 is an allowed origin:
the page that polls is served by a second server on a port of its own."""

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [*INSTALLED_APPS, "corsheaders"]
MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware", *MIDDLEWARE]
CORS_ALLOWED_ORIGIN_REGEXES = [r"^http://127\.0\.0\.1:\d+$"]
