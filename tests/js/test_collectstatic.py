"""notify.js is ES modules: under a manifest storage that rewrites imports, every hashed
module imports the hashed names of the others, so a page loads one consistent version.

(Python beside the JavaScript tests it protects; Django 5.2+ rewrites `import ... from`
in JS when ``support_js_module_import_aggregation`` is on.)
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.staticfiles.storage import ManifestStaticFilesStorage
from django.core.management import call_command
from django.template import Context, Template
from django.test import RequestFactory, override_settings

IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*)["'](\.{1,2}/[^"']+)["']""")


class JsModuleManifestStorage(ManifestStaticFilesStorage):
    support_js_module_import_aggregation = True


@pytest.fixture
def collected(tmp_path: Path):  # type: ignore[no-untyped-def]
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": f"{__name__}.JsModuleManifestStorage"},
    }
    with override_settings(STATIC_ROOT=tmp_path, STORAGES=storages, DEBUG=False):
        call_command("collectstatic", interactive=False, verbosity=0)
        yield tmp_path, json.loads((tmp_path / "staticfiles.json").read_text())["paths"]


def test_hashed_modules_import_the_hashed_modules(collected):
    root, paths = collected
    modules = {name: hashed for name, hashed in paths.items() if name.startswith("notify/") and name.endswith(".js")}
    assert {"notify/notify.js", "notify/notify-bell.js", "notify/lib/client.js"} <= set(modules)
    hashed_names = set(modules.values())
    imported = set()
    for hashed in modules.values():
        for specifier in IMPORT.findall((root / hashed).read_text()):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(hashed), specifier))
            assert target in hashed_names, f"{hashed} imports {specifier}, not a hashed module"
            assert (root / target).is_file()
            imported.add(target)
    # Every module but the two page scripts is reached from them.
    assert hashed_names - imported == {modules["notify/notify.js"], modules["notify/notify-bell.js"]}


def test_the_tags_render_the_hashed_page_scripts(collected, make_user):
    _, paths = collected
    request = RequestFactory().get("/")
    request.user = make_user()
    html = Template("{% load notify %}{% notify_client %}{% notify_bell %}").render(Context({"request": request}))

    assert f'<script type="module" defer src="/static/{paths["notify/notify.js"]}"' in html
    assert f'<script type="module" src="/static/{paths["notify/notify-bell.js"]}"' in html
    request.user = AnonymousUser()
