# StepChange: `make run` starts it with a sample DBOS app; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PORT ?= 8001
HOST ?= 127.0.0.1
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/stepchange
PYTEST_ARGS ?=

.PHONY: install run migrate test check lint typecheck pytest pytest-sqlite pytest-postgres clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

migrate: install
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py ensure_admin
	$(PY) -m stepchange.server -b $(HOST) -p $(PORT)

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
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
