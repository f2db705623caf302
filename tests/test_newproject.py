"""A brand-new Django project gets live notifications by following README's install steps as written.

This checkout is built into an sdist and a wheel (``python -m build``: the wheel is
built from the sdist, so the sdist is proven complete too), the wheel is installed
into a new virtualenv, ``django-admin startproject mysite`` runs there, and the
fenced code blocks between README's ``install:start`` and ``install:end`` markers
are applied to it: ``pip install`` lines (with the wheel in place of the
distribution's name), Python blocks appended to the file named on their first line,
``python manage.py`` lines run, the ``{% notify_client %}`` template, the uvicorn
line served. If README's steps are wrong, these tests fail.

What the test adds of its own: this run's Redis prefix and Redis URL, a page that
renders README's template, two users and a token. Slow-ish (a pip install into a
new virtualenv): about a minute with a warm pip cache.
"""

from __future__ import annotations

import html
import http.client
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from django.conf import settings

from tests.server import free_port

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "django-notify-longpoll"
PROJECT = "mysite"
PASSWORD = "a-long-test-password-42"
# Under this run's prefix, so that conftest's redis_client clears these keys too.
PREFIX = f"{settings.NOTIFY['CHANNEL_PREFIX']}-newproject"


# --- README's install section -------------------------------------------------------------


@dataclass
class Steps:
    pip: list[list[str]] = field(default_factory=list)  # argv after "pip"
    files: list[tuple[str, str]] = field(default_factory=list)  # (path, text to append)
    manage: list[list[str]] = field(default_factory=list)  # argv after "python manage.py"
    template: str = ""
    serve: list[str] = field(default_factory=list)  # argv of the uvicorn line


def install_steps() -> Steps:
    """The fenced code blocks of README's install section, sorted by what they ask for."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- install:start.*?-->(.*?)<!-- install:end -->", readme, re.S)
    assert match, "README.md has no <!-- install:start --> ... <!-- install:end --> section"
    steps = Steps()
    for _indent, language, body in re.findall(r"^( *)```(\w*)\n(.*?)^\1```$", match.group(1), re.S | re.M):
        code = textwrap.dedent(body)
        if language == "python":
            first = code.splitlines()[0]
            target = re.match(r"# (\S+\.py): add at the end$", first)
            assert target, f"a Python block must start with '# <file>: add at the end', not {first!r}"
            steps.files.append((target.group(1), code))
        elif language == "django":
            steps.template += code
        elif language == "sh":
            for line in code.splitlines():
                argv = shlex.split(line, comments=True)
                if argv[:2] == ["pip", "install"]:
                    steps.pip.append(argv[1:])
                elif argv[:2] == ["python", "manage.py"]:
                    steps.manage.append(argv[2:])
                elif argv[:1] == ["uvicorn"]:
                    steps.serve = argv
                elif argv:
                    raise AssertionError(f"README's install section runs a command this test cannot follow: {line}")
        else:
            raise AssertionError(f"README's install section has a ```{language} block this test cannot follow")
    assert steps.pip and steps.files and steps.manage and steps.template and steps.serve, steps
    return steps


# --- the distribution -----------------------------------------------------------------------


@dataclass
class Built:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    assert importlib.util.find_spec("build"), "the build frontend is missing: pip install -r requirements-dev.txt"
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("django_notify_longpoll-*.whl")
    (sdist,) = out.glob("django_notify_longpoll-*.tar.gz")
    return Built(wheel, sdist)


def test_wheel_holds_the_notify_package_and_nothing_else(built: Built) -> None:
    names = zipfile.ZipFile(built.wheel).namelist()
    dist_info = f"django_notify_longpoll-{built.wheel.name.split('-')[1]}.dist-info/"
    assert {name.split("/")[0] + "/" for name in names} == {"notify/", dist_info}
    for needed in [
        "notify/__init__.py",
        "notify/py.typed",
        "notify/migrations/0001_initial.py",
        "notify/static/notify/notify.js",
        "notify/static/notify/notify.css",
        "notify/templates/notify/bell.html",
        "notify/templates/admin/notify/send_notification.html",
        "notify/templatetags/notify.py",
        "notify/management/commands/notify_send.py",
        "notify/management/commands/notify_token.py",
        "notify/broker/redis.py",
        "notify/client/__main__.py",
        f"{dist_info}licenses/LICENSE",
    ]:
        assert needed in names, needed
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    metadata = zipfile.ZipFile(built.wheel).read(f"{dist_info}METADATA").decode()
    assert f"Name: {DISTRIBUTION}\n" in metadata
    assert "Requires-Dist: django<6.2,>=5.2\n" in metadata


def test_sdist_holds_the_package_and_no_demo(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        top = {name.split("/", 2)[1] for name in sdist.getnames() if name.count("/")}
    assert {"notify", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "PKG-INFO"} <= top
    assert not top & {"project", "tests", "bench", "deploy", "docs", "templates", "manage.py", "requirements.txt"}


# --- a new project in a new virtualenv ------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Site:
    """The new project, served by uvicorn from its own virtualenv."""

    venv: Path
    project: Path
    env: dict[str, str]
    users: dict[str, int]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.venv / "bin" / "python"), "manage.py", *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"manage.py {' '.join(args)}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
        return result.stdout

    def request(
        self,
        method: str,
        path: str,
        *,
        cookies: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        form: dict[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> Answer:
        """One HTTP request; ``cookies`` is sent, and updated with what the answer sets."""
        headers = dict(headers or {})
        body = None
        if form is not None:
            body = urlencode(form, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            answer = Answer(reply.status, reply.msg, reply.read())
        finally:
            conn.close()
        if cookies is not None:
            for set_cookie in answer.headers.get_all("Set-Cookie") or []:
                name, _, value = set_cookie.split(";", 1)[0].partition("=")
                cookies[name.strip()] = value.strip().strip('"')
        return answer

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def clean_env(venv: Path) -> dict[str, str]:
    """This environment without what points at the demo project or this checkout."""
    leave_out = ("DJANGO_", "NOTIFY_", "DATABASE_URL", "REDIS_URL", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    env = {name: value for name, value in os.environ.items() if not name.startswith(leave_out)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{shlex.join(argv)}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


def with_wheel(argv: list[str], wheel: Path) -> list[str]:
    """README's ``pip install`` arguments, the built wheel in place of the distribution's name."""
    replaced = []
    for arg in argv:
        name, bracket, extras = arg.partition("[")
        replaced.append(f"{wheel}{bracket}{extras}" if name == DISTRIBUTION else arg)
    assert replaced != argv or DISTRIBUTION not in " ".join(argv), argv
    return replaced


@pytest.fixture(scope="module")
def site(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    steps = install_steps()
    assert any(DISTRIBUTION in " ".join(argv) for argv in steps.pip), "README never installs " + DISTRIBUTION
    home = tmp_path_factory.mktemp("newproject")
    venv = home / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    env = clean_env(venv)
    for argv in steps.pip:
        run([str(venv / "bin" / "python"), "-m", "pip", *with_wheel(argv, built.wheel)], env=env, cwd=home)
    run([str(venv / "bin" / "django-admin"), "startproject", PROJECT], env=env, cwd=home)
    project = home / PROJECT

    for path, code in steps.files:
        with open(project / path, "a") as file:
            file.write("\n\n" + code)
    # The test's own additions: this run's Redis keys, and a page that renders README's template.
    (project / "templates").mkdir()
    (project / "templates" / "page.html").write_text(
        f"<!doctype html>\n<html><head><title>page</title>\n{steps.template}</head><body>page</body></html>\n"
    )
    with open(project / PROJECT / "settings.py", "a") as file:
        file.write(
            textwrap.dedent(f"""

            # tests/test_newproject.py: this test run's own Redis and keys; its page's template.
            NOTIFY["REDIS_URL"] = {settings.NOTIFY["REDIS_URL"]!r}
            NOTIFY["CHANNEL_PREFIX"] = {PREFIX!r}
            CACHES["default"]["LOCATION"] = {settings.REDIS_URL!r}
            CACHES["default"]["KEY_PREFIX"] = {PREFIX!r}
            TEMPLATES[0]["DIRS"] = [BASE_DIR / "templates"]
            """)
        )
    with open(project / PROJECT / "urls.py", "a") as file:
        file.write(
            "\n\n# tests/test_newproject.py: a page with README's template.\n"
            "from django.views.generic import TemplateView  # noqa: E402\n\n"
            'urlpatterns += [path("page/", TemplateView.as_view(template_name="page.html"))]\n'
        )

    live = Site(venv=venv, project=project, env=env, users={})
    # The project runs the installed distribution, not this checkout.
    where = live.manage("shell", "-c", "import notify; print(notify.__file__)").strip().splitlines()[-1]
    assert where.startswith(str(venv)), where
    live.manage("check", "--fail-level", "WARNING")
    for argv in steps.manage:
        live.manage(*argv)
    made = live.manage(
        "shell",
        "-c",
        "import json; from django.contrib.auth.models import User; "
        f"alice = User.objects.create_user('alice', password={PASSWORD!r}); "
        f"admin = User.objects.create_superuser('admin', password={PASSWORD!r}); "
        "print(json.dumps({'alice': alice.pk, 'admin': admin.pk}))",
    )
    live.users = json.loads(made.strip().splitlines()[-1])

    assert (venv / "bin" / "uvicorn").exists(), "README's pip install brought no uvicorn to serve with"
    live.port = free_port()
    live.log_path = home / "uvicorn.log"
    assert steps.serve[0] == "uvicorn" and steps.serve[1] == f"{PROJECT}.asgi:application", steps.serve
    command = [str(venv / "bin" / "uvicorn"), *steps.serve[1:], "--host", "127.0.0.1", "--port", str(live.port)]
    with open(live.log_path, "ab") as log:
        live.process = subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: answers(live), timeout=30, what=f"uvicorn to answer: {live.log()}")
        yield live
    finally:
        live.stop()
    log = live.log()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log


def answers(live: Site) -> bool:
    assert live.process is not None and live.process.poll() is None, live.log()
    try:
        status = live.request("GET", "/notify/poll").status
    except OSError:
        return False
    assert status == 401, f"GET /notify/poll answered {status}, not 401: are notify's URLs mounted?"
    return True


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.05)


def subscribers(redis_client: redis.Redis, user_id: int) -> int:
    """Subscriptions to the user's channel: a held poll of theirs has one."""
    ((_, count),) = redis_client.pubsub_numsub(f"{PREFIX}:user:{user_id}")
    return int(count)


def held_then_woken(
    site: Site, redis_client: redis.Redis, user: str, poll: Callable[[str], Answer], title: str
) -> tuple[Answer, float]:
    """Poll past the user's cursor; once the poll is held, ``notify_send`` from another process.

    The answer, and how long after the send it came."""
    cursor = poll("").json()["cursor"]
    user_id = site.users[user]
    # A channel lingers after its last poll (UNSUBSCRIBE_DELAY): wait until it is gone,
    # so that a subscription seen next is the held poll's own.
    wait_until(lambda: subscribers(redis_client, user_id) == 0, what="the previous poll's subscription to end")
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(poll, cursor)
        wait_until(lambda: subscribers(redis_client, user_id) > 0 or held.done(), what="the poll to be held")
        assert not held.done(), held.result().body
        sent_at = time.monotonic()
        site.manage("notify_send", user, title, "--body", "from another process")
        answer = held.result(timeout=20)
        return answer, time.monotonic() - sent_at


def test_bearer_token_poll_is_held_and_woken_by_notify_send(site: Site, redis_client: redis.Redis) -> None:
    token = site.manage("notify_token", "alice").strip().splitlines()[-1]

    def poll(after: str) -> Answer:
        query = urlencode({"after": after, "timeout": 30} if after else {})
        return site.request("GET", f"/notify/poll?{query}", headers={"Authorization": f"Bearer {token}"})

    answer, after_send = held_then_woken(site, redis_client, "alice", poll, "Hello, bearer")

    assert answer.status == 200, answer.body
    assert [n["title"] for n in answer.json()["notifications"]] == ["Hello, bearer"]
    assert after_send < 10  # woken by the send, not by the 30 s timeout


def login(site: Site) -> dict[str, str]:
    """Session cookies of the superuser, logged in through the admin's login form."""
    cookies: dict[str, str] = {}
    form = site.request("GET", "/admin/login/", cookies=cookies)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert form.status == 200 and token, form.text[:2000]
    done = site.request(
        "POST",
        "/admin/login/?next=/admin/",
        cookies=cookies,
        form={"csrfmiddlewaretoken": token.group(1), "username": "admin", "password": PASSWORD, "next": "/admin/"},
    )
    assert done.status == 302 and "sessionid" in cookies, done.text[:2000]
    return cookies


def test_session_poll_from_a_page_with_notify_client(site: Site, redis_client: redis.Redis) -> None:
    cookies = login(site)
    page = site.request("GET", "/page/", cookies=cookies)
    assert page.status == 200, page.text[:2000]
    script = re.search(r'<script type="module" defer ([^>]*)></script>', page.text)
    assert script, page.text
    attrs = {name: html.unescape(value) for name, value in re.findall(r'([\w-]+)="([^"]*)"', script.group(1))}
    assert attrs["data-notify-user"] == str(site.users["admin"])

    # notify.js is served (staticfiles_urlpatterns, DEBUG) and collected into STATIC_ROOT, unchanged.
    shipped = next(site.venv.glob("lib/python*/site-packages/notify/static/notify/notify.js")).read_bytes()
    served = site.request("GET", attrs["src"])
    assert served.status == 200 and served.body == shipped
    assert (site.project / "staticfiles" / "notify" / "notify.js").read_bytes() == shipped
    # ...and so is every ES module it imports, and each of theirs.
    base = attrs["src"].rsplit("/", 1)[0]
    modules, seen = re.findall(r'from "\./(lib/[\w-]+\.js)"', shipped.decode()), set()
    while modules:
        module = modules.pop()
        if module in seen:
            continue
        seen.add(module)
        answer = site.request("GET", f"{base}/{module}")
        assert answer.status == 200 and "javascript" in answer.headers.get("content-type", ""), module
        assert (site.project / "staticfiles" / "notify" / module).exists(), module
        modules += [f"lib/{name}" for name in re.findall(r'from "\./([\w-]+\.js)"', answer.text)]
    assert "lib/index.js" in seen and len(seen) > 5, seen

    def poll(after: str) -> Answer:
        query = urlencode({"after": after, "timeout": 30} if after else {})
        return site.request("GET", f"{attrs['data-notify-poll-url']}?{query}", cookies=dict(cookies))

    answer, after_send = held_then_woken(site, redis_client, "admin", poll, "Hello, session")

    assert answer.status == 200, answer.body
    assert [n["title"] for n in answer.json()["notifications"]] == ["Hello, session"]
    assert after_send < 10


def test_admin_sends_a_notification_to_selected_users(site: Site) -> None:
    cookies = login(site)
    changelist = site.request("GET", "/admin/auth/user/", cookies=cookies)
    assert changelist.status == 200
    assert '<option value="send_notification">Send notification…</option>' in changelist.text
    token = site.manage("notify_token", "alice", "--name", "admin-test").strip().splitlines()[-1]
    bearer = {"Authorization": f"Bearer {token}"}
    cursor = site.request("GET", "/notify/poll", headers=bearer).json()["cursor"]

    action = {
        "csrfmiddlewaretoken": cookies["csrftoken"],
        "action": "send_notification",
        "_selected_action": [site.users["alice"]],
        "index": 0,
    }
    form = site.request("POST", "/admin/auth/user/", cookies=cookies, form=action)
    assert form.status == 200 and 'id="notify-send-form"' in form.text, form.text[:2000]
    sent = site.request(
        "POST",
        "/admin/auth/user/",
        cookies=cookies,
        form={**action, "apply": "1", "title": "From the admin", "body": "", "level": "info", "url": ""},
    )
    assert sent.status == 302, sent.text[:2000]

    answer = site.request("GET", f"/notify/poll?{urlencode({'after': cursor, 'timeout': 5})}", headers=bearer)
    assert [n["title"] for n in answer.json()["notifications"]] == ["From the admin"]
