"""ASGI entry point: ``uvicorn project.asgi:application``."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from notify.asgi import LongPollRouter  # noqa: E402 - needs the app registry ready

if settings.DEBUG:
    # Static files for the demo under uvicorn, as runserver serves them: Django's ASGI
    # handler for them reads files without the "StreamingHttpResponse must consume
    # synchronous iterators" warning that serving them through a URL pattern logs for
    # every file. A deployment (DEBUG off) serves static files in front of the app.
    django_application = ASGIStaticFilesHandler(django_application)

# Held polls are served without a thread each; everything else by Django as usual.
application = LongPollRouter(django_application)

# A worker holding 10,000 polls keeps a few million objects alive, and CPython's
# full collection walks all of them: 0.5-0.7 s pauses at 10,000 held polls, the
# whole of the delivery latency's tail (measured: docs/benchmarks.md, variant
# uvicorn-stock-gc). Freeze what start-up made (it lives as long as the process)
# and collect less often; refcounting still frees almost everything at once. A
# project's decision, recommended in docs/deploy.md; NOTIFY_STOCK_GC=1 leaves it out.
if os.environ.get("NOTIFY_STOCK_GC") != "1":
    gc.freeze()
    gc.set_threshold(10_000, 10, 100)
