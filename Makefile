# StepChange: `make run` starts it with a sample DBOS app; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
INSTALLED_RUN := $(VENV)/.installed-run
# dbos 3.4.0, whose Conductor client is not open source: the database-managed e2e tests.
VENV_DBOS340 := .venv-dbos340
INSTALLED_DBOS340 := $(VENV_DBOS340)/.installed
PORT ?= 8001
HOST ?= 127.0.0.1
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/stepchange
PYTEST_ARGS ?=

DATA := $(or $(STEPCHANGE_DATA_DIR),$(CURDIR)/var)
SAMPLE_PORT ?= 8000
ADMIN_USER := $(or $(STEPCHANGE_ADMIN_USER),admin)
# The sample app's recovery grace period: short, so the crash demo's recovery can be watched.
SAMPLE_RECOVERY_GRACE ?= 10
NODE_SAMPLE := samples/typescript/node_modules/.package-lock.json
NODE_TEST_TOOLS := node_modules/.package-lock.json

.PHONY: install install-run run migrate test check lint typecheck pytest pytest-sqlite pytest-postgres clean
# Each recipe runs in one shell, so `run` can stop the sample app when StepChange stops.
.ONESHELL:
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# What running StepChange needs: its own packages and the sample app's dbos, in .venv only.
$(INSTALLED_RUN): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[sample]"
	touch $(INSTALLED_RUN)

# What the suite needs besides: test runners, linters, type stubs, Playwright, schemathesis.
$(INSTALLED): pyproject.toml
	@echo "make test installs: the test tools (.venv), the TypeScript sample's npm packages"
	echo "  (samples/typescript/node_modules, for the end-to-end tests), axe-core (node_modules,"
	echo "  for the accessibility checks), Debian's chromium (apt, for the browser tests) and"
	echo "  nginx (apt, the proxy of the fail-over test; run unprivileged by the test itself)."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED) $(INSTALLED_RUN)

# The executor of tests/e2e/test_database_managed.py; never with dbos-enterprise.
$(INSTALLED_DBOS340): tests/e2e/requirements-dbos340.txt
	$(PYTHON) -m venv $(VENV_DBOS340)
	$(VENV_DBOS340)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_DBOS340)/bin/python -m pip install --quiet -r tests/e2e/requirements-dbos340.txt
	touch $(INSTALLED_DBOS340)

# The TypeScript sample executor, used by the end-to-end tests.
$(NODE_SAMPLE): samples/typescript/package-lock.json
	cd samples/typescript && npm ci --no-audit --no-fund --loglevel=error

# axe-core for the browser tests' accessibility checks: a test-time tool, never served.
$(NODE_TEST_TOOLS): package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

# Debian's Chromium for the browser tests (Playwright's own browser download cannot work here).
/usr/bin/chromium:
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi

# nginx for tests/e2e/test_failover.py, which runs it itself on a free port.
/usr/sbin/nginx:
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq nginx-light; \
	else sudo apt-get update -qq && sudo apt-get install -y -qq nginx-light; fi

install: $(INSTALLED) $(INSTALLED_DBOS340) $(NODE_SAMPLE) $(NODE_TEST_TOOLS) /usr/bin/chromium \
	/usr/sbin/nginx

install-run: $(INSTALLED_RUN)

migrate: install-run
	$(PY) manage.py migrate --noinput

# StepChange on $(HOST):$(PORT), and beside it the Python sample DBOS app (its page on
# 127.0.0.1:$(SAMPLE_PORT)) connected to it with a key generated once into the data dir.
# Daphne first, the sample once it answers; the sample comes back disarmed after its crash demo.
run: migrate
	@admin="$$($(PY) manage.py ensure_admin)"
	mkdir -p "$(DATA)"
	test -s "$(DATA)/sample_key" || $(PY) -c "import secrets; print(secrets.token_urlsafe(24))" > "$(DATA)/sample_key"
	$(PY) manage.py register_app sample-app --key="$$(cat "$(DATA)/sample_key")" \
		--system-database-url "sqlite:///$(DATA)/sample-app.sqlite" \
		--recovery-grace-seconds $(SAMPLE_RECOVERY_GRACE) > /dev/null
	$(PY) -m stepchange.server -b $(HOST) -p $(PORT) &
	server=$$!
	sample=
	trap 'kill $$sample $$server 2>/dev/null; wait 2>/dev/null' EXIT
	$(PY) samples/python/supervise.py wait http://$(HOST):$(PORT)/accounts/login/
	DBOS_APP_NAME=sample-app DBOS_CONDUCTOR_URL=ws://$(HOST):$(PORT) \
		DBOS_CONDUCTOR_KEY="$$(cat "$(DATA)/sample_key")" \
		DBOS_SYSTEM_DATABASE_URL="sqlite:///$(DATA)/sample-app.sqlite" \
		SAMPLE_HTTP_PORT=$(SAMPLE_PORT) $(PY) samples/python/supervise.py run &
	sample=$$!
	$(PY) samples/python/supervise.py wait http://127.0.0.1:$(SAMPLE_PORT)/health
	password="$$(printf '%s\n' "$$admin" | sed -n 's/^Password[^:]*: //p')"
	echo
	echo "StepChange is running: http://$(HOST):$(PORT)/"
	if [ -n "$$password" ]; then
		echo "  sign in as $(ADMIN_USER), password $$password (shown once; change it after signing in)"
	else
		echo "  sign in as $(ADMIN_USER) (forgot the password? $(PY) manage.py changepassword $(ADMIN_USER))"
	fi
	echo "  sample DBOS app: http://127.0.0.1:$(SAMPLE_PORT)/?name=world (crash demo: ?name=poison)"
	echo "  stop: Ctrl-C"
	wait $$server

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy .

check: lint typecheck

pytest-sqlite: install
	env -u DATABASE_URL $(PY) -m pytest $(PYTEST_ARGS)

pytest-postgres: install
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) -m pytest $(PYTEST_ARGS)

pytest: pytest-sqlite pytest-postgres

test: check pytest

clean:
	rm -rf $(VENV) $(VENV_DBOS340) .mypy_cache .ruff_cache .pytest_cache
