"""The OpenAPI 3.1 document of notify's HTTP API (notify/openapi.json), served at ``openapi.json``.

The file is the source: hand-written beside the contract it describes (docs/http.md,
docs/history.md), shipped in the wheel, and checked against a running server by
tests/test_openapi.py (schemathesis). Served with its ``servers`` set to where this
site mounts ``notify.urls``, so that a client generator or a fuzzer pointed at the
URL finds the endpoints.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from notify.views import method_not_allowed


@cache
def document() -> dict[str, Any]:
    """The document as shipped (paths relative to the mount point, ``servers`` ``/notify``)."""
    loaded: dict[str, Any] = json.loads(resources.files("notify").joinpath("openapi.json").read_text("utf-8"))
    return loaded


@csrf_exempt  # GET only: it changes nothing
def openapi(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return method_not_allowed("GET")
    served = copy.deepcopy(document())
    served["servers"] = [{"url": request.path.removesuffix("/openapi.json"), "description": "this site"}]
    return JsonResponse(served, json_dumps_params={"ensure_ascii": False})
