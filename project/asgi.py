"""ASGI entry point: ``uvicorn project.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

django_application = get_asgi_application()

from notify.asgi import LongPollRouter  # noqa: E402 - needs the app registry ready

# Held polls are served without a thread each; everything else by Django as usual.
application = LongPollRouter(django_application)
