# Metricis server: the commands a newcomer needs. Everything runs from the repository's own files.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(CURDIR)/$(TOOLS)/bin/uv
SERVER := server
VENV_BIN := $(CURDIR)/$(SERVER)/.venv/bin

.PHONY: help setup lock run test test-postgres test-sqlite lint typecheck fmt migrate bench clean

help:
	@echo "make run        set up, migrate, create the demo data and serve on http://127.0.0.1:8000"
	@echo "make test       set up and run the whole test suite"
	@echo "make lint | typecheck | fmt | migrate | bench"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The virtual environment follows the lock file exactly (names, versions and hashes; no
# download addresses); the project itself is installed editable without build isolation,
# with the build backend pinned in the lock too. Dependencies are compiled to bytecode at
# install: a process started without it (PYTHONDONTWRITEBYTECODE=1 is common) compiles every
# import again, which made each server worker take many seconds to start.
$(SERVER)/.venv/.synced: $(UV) $(SERVER)/requirements.lock $(SERVER)/pyproject.toml
	cd $(SERVER) && UV_PYTHON_DOWNLOADS=never $(UV) venv --quiet --allow-existing --python 3.11 .venv
	cd $(SERVER) && $(UV) pip sync --quiet --compile-bytecode --python .venv/bin/python --require-hashes requirements.lock
	cd $(SERVER) && $(UV) pip install --quiet --python .venv/bin/python --no-deps --no-build-isolation -e .
	touch $@

# Re-resolve the pinned dependency tree after editing pyproject.toml.
lock: $(UV)
	cd $(SERVER) && $(UV) pip compile pyproject.toml --group dev --generate-hashes \
		--no-emit-index-url --python-version 3.11 --python-platform linux -o requirements.lock

# The application's own bytecode, refreshed on every setup (only changed files are compiled).
setup: $(SERVER)/.venv/.synced
	cd $(SERVER) && $(VENV_BIN)/python -m compileall -q -j 0 app > /dev/null

run: setup
	cd $(SERVER) && $(VENV_BIN)/metricis db upgrade
	cd $(SERVER) && $(VENV_BIN)/metricis demo
	cd $(SERVER) && $(VENV_BIN)/metricis serve

migrate: setup
	cd $(SERVER) && $(VENV_BIN)/metricis db upgrade

# PostgreSQL when it is reachable, SQLite otherwise (see server/tests/conftest.py).
test: setup
	cd $(SERVER) && $(VENV_BIN)/pytest $(PYTEST_ARGS)

test-postgres: setup
	cd $(SERVER) && METRICIS_TEST_DATABASE=postgres $(VENV_BIN)/pytest $(PYTEST_ARGS)

test-sqlite: setup
	cd $(SERVER) && METRICIS_TEST_DATABASE=sqlite $(VENV_BIN)/pytest $(PYTEST_ARGS)

lint: setup
	cd $(SERVER) && $(VENV_BIN)/ruff check . && $(VENV_BIN)/ruff format --check . && $(VENV_BIN)/lint-imports

typecheck: setup
	cd $(SERVER) && $(VENV_BIN)/mypy

fmt: setup
	cd $(SERVER) && $(VENV_BIN)/ruff format . && $(VENV_BIN)/ruff check --fix .

bench: setup
	cd $(SERVER) && $(VENV_BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(TOOLS) $(SERVER)/.venv
