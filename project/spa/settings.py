"""The demo's settings, plus CORS for the example single-page app (project/spa/), as a
django-cors-headers user writes them (docs/js-client.md, "A single-page app on another origin").

    DJANGO_SETTINGS_MODULE=project.spa.settings make run

``SPA_ORIGINS``: the origins the app is served from, comma-separated (``http://127.0.0.1:8001``).
"""

import os

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [*INSTALLED_APPS, "corsheaders"]
# As high as possible, and above CommonMiddleware (django-cors-headers' README). notify's
# LongPollRouter finds it here and runs it around the polls it serves too (POLL_MIDDLEWARE).
MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware", *MIDDLEWARE]
CORS_ALLOWED_ORIGINS = os.environ.get("SPA_ORIGINS", "http://127.0.0.1:8001").split(",")
# notify's endpoints only; the rest of the site stays same-origin.
CORS_URLS_REGEX = r"^/notify/"
# A 429 or 503 says how long to wait: let the client read it (it never waits less).
CORS_EXPOSE_HEADERS = ["Retry-After"]
# No CORS_ALLOW_CREDENTIALS: the app sends a bearer token, no cookie. The default
# CORS_ALLOW_HEADERS allow its Authorization and Content-Type.
