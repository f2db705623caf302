# Two commands: `make run` (the demo at http://127.0.0.1:8000) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
REDIS_URL ?= redis://127.0.0.1:6379/0
export REDIS_URL

.PHONY: run test test-sqlite test-postgres test-matrix lint docs install system-deps check clean bench bench-quick

# Supported: Python 3.11-3.13 with Django 5.2 LTS, 6.0 and 6.1 (Django 6 needs Python 3.12+).
# The primary pair, Python 3.11 + Django 5.2 (requirements.txt's pins), runs the whole suite on
# SQLite and PostgreSQL; each pair below (python:django) runs MATRIX_TESTS on SQLite in a venv
# of its own, with requirements.txt's other pins.
MATRIX ?= 3.12:6.0.10 3.13:6.1.3
MATRIX_TESTS ?= tests/test_contract.py tests/test_delivery.py tests/test_trust.py tests/test_topics.py
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt requirements-test.txt requirements-dev.txt requirements-docs.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt -r requirements-docs.txt
	touch $@

install: $(VENV)/.installed

# Debian packages the tests drive: Chromium (through Playwright; nothing downloads a
# browser) and nginx (deploy/nginx.conf in front of several app servers).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing$$missing (Debian packages)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "Missing$$missing and this user cannot apt-get: those tests are skipped here (CI fails)."; \
		fi; \
	fi

run: install
	@mkdir -p var
	$(BIN)/python manage.py migrate --verbosity 0
	$(BIN)/python manage.py demo_seed
	@# The reminder scheduler runs beside uvicorn, and is stopped (by its PID) when
	@# uvicorn exits, however it exits. It also emails digests of what stays unread
	@# (docs/email.md), to this terminal: NOTIFY_EMAIL_DIGESTS=0 turns them off.
	@if ! $(BIN)/python -c "import redis, os; redis.Redis.from_url(os.environ['REDIS_URL'], socket_connect_timeout=1).ping()" 2>/dev/null; then \
		echo "WARNING: Redis does not answer at $(REDIS_URL): using the in-process memory broker."; \
		echo "         Fine for this single-process demo; production needs Redis."; \
		echo "         Reminders: the scheduler is another process and cannot wake the server's held polls"; \
		echo "         without Redis, so a reminder arrives with the browser's next poll (up to 25 s late)."; \
		export NOTIFY_BROKER=memory; \
	fi; \
	export NOTIFY_EMAIL_DIGESTS=$${NOTIFY_EMAIL_DIGESTS:-1}; \
	$(BIN)/python manage.py notify_scheduler & scheduler=$$!; \
	trap 'kill $$scheduler 2>/dev/null; wait $$scheduler' EXIT; \
	trap 'exit 0' INT TERM; \
	$(BIN)/uvicorn project.asgi:application --host $(HOST) --port $(PORT)

# The gates first (they answer in seconds), the browser client's unit tests, then the suite twice:
# on SQLite, and beside it on PostgreSQL followed by the other supported Python/Django pairs
# (browser tests once, on SQLite, and the new-project test once: that project has a database of
# its own). The two legs run at once because most of a leg is waiting on servers, timeouts and
# Redis, not CPU; each run has its own databases and Redis prefix (tests/settings.py). make's
# --output-sync prints each leg's output whole, once it ends.
test: install system-deps lint docs test-js
	$(MAKE) --no-print-directory -j2 --output-sync=recurse test-sqlite test-postgres-and-matrix

.PHONY: test-postgres-and-matrix
test-postgres-and-matrix: test-postgres
	$(MAKE) --no-print-directory test-matrix

# ruff (rules in pyproject.toml), the formatter, and mypy with django-stubs on the app.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy notify

# The docs site (mkdocs.yml), strict: a broken link or anchor fails.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir var/site

# The browser client (notify/static/notify/lib/): eslint and its unit tests on Node's own runner
# (Node 20+, no browser). npm ci installs eslint from package-lock.json when node_modules is older.
.PHONY: test-js
test-js:
	@if [ ! -f node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ] \
		|| [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi
	node_modules/.bin/eslint
	node --test tests/js/

test-matrix:
	@set -e; for pair in $(MATRIX); do \
		py=$${pair%%:*}; django=$${pair#*:}; venv=.venv-py$$py-django$$django; \
		interpreter=$$(ls -d $(PYENV_ROOT)/versions/$$py.*/bin/python 2>/dev/null | sort -V | tail -1); \
		[ -n "$$interpreter" ] || interpreter=$$(command -v python$$py) || { echo "No Python $$py found"; exit 1; }; \
		if [ ! -f $$venv/.installed ] || [ requirements.txt -nt $$venv/.installed ] || [ requirements-test.txt -nt $$venv/.installed ]; then \
			echo "Creating $$venv ($$interpreter, Django $$django)"; \
			rm -rf $$venv; $$interpreter -m venv $$venv; \
			$$venv/bin/pip install --quiet -r requirements-test.txt -r <(grep -iv '^django==' requirements.txt) "Django==$$django"; \
			touch $$venv/.installed; \
		fi; \
		echo "Python $$py + Django $$django: $(MATRIX_TESTS)"; \
		DATABASE_URL=sqlite:///$(CURDIR)/var/unused.sqlite3 $$venv/bin/python -m pytest -q $(MATRIX_TESTS); \
	done

test-sqlite: install
	DATABASE_URL=sqlite:///$(CURDIR)/var/unused.sqlite3 $(BIN)/pytest

# The PostgreSQL run leaves out what does not depend on the database: the browser, the new
# project, the transport and process tests (nginx in front, Redis Cluster, the hub, server
# shutdown, slow clients) and the benchmark's smoke run (its own SQLite file and var/ files, which
# the SQLite run, running beside it, writes), all covered by the SQLite run.
PG_SKIP := --ignore=tests/test_newproject.py --ignore=tests/test_nginx.py --ignore=tests/test_cluster.py \
	--ignore=tests/test_hub.py --ignore=tests/test_servers_shutdown.py --ignore=tests/test_slow_clients.py \
	--ignore=tests/test_bench.py

test-postgres: install
	@if [ "$$CI" = true ] || $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
		echo "DATABASE_URL=$(POSTGRES_URL) $(BIN)/pytest -m 'not browser' $(PG_SKIP)"; \
		DATABASE_URL=$(POSTGRES_URL) $(BIN)/pytest -m "not browser" $(PG_SKIP); \
	else \
		echo "PostgreSQL does not answer at 127.0.0.1:5432: the PostgreSQL run is skipped here (in CI it fails)."; \
	fi

check: install
	$(BIN)/python manage.py check

clean:
	rm -rf $(VENV) .venv-py* var db.sqlite3

# The benchmark (docs/benchmarks.md): every variant at N = 1,000 / 5,000 / 10,000, about
# 22 minutes; rewrites docs/benchmarks.md and docs/img/benchmarks.png. Loopback only.
bench: install
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py

# What the benchmark needs beyond `make install`: the other servers, py-spy and matplotlib (pip),
# and for its nchan variant Debian's nginx + libnginx-mod-nchan (apt-get, as root; bench/run.py
# also installs them itself when run as root). Fails, saying why, where they cannot be installed.
.PHONY: bench-deps
bench-deps: install
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/nchan.py --install

# The same run at N = 200 on uvicorn only, in seconds: fails on loss, duplicates or errors.
bench-quick: install
	$(BIN)/python bench/run.py --quick

# Plants each bug of tests/mutants/mutants.toml in a scratch copy (var/mutants/) and fails if
# the tests named to catch it still pass. Not part of `make test`: run it before resolving.
.PHONY: mutants
mutants: install
	$(BIN)/python tests/mutants/run.py
