# GarageGrid: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DB ?= garagegrid.db
export GARAGEGRID_DATABASE_URL ?= sqlite+aiosqlite:///$(DB)

.PHONY: demo test lint typecheck pytest venv bench clean test-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Test-only tools outside PyPI: an independent OCPP implementation (npm: ocpp-rpc),
# Debian's Chromium + ChromeDriver for the monitor's real-browser test, and Debian's
# PostgreSQL 15 server (the store's tests start their own server in a temp directory).
# Under CI=true a test that would skip for a missing tool fails instead (tests/ci_policy.py).
NODE_STAMP := tests/strict_cp/node_modules/.installed
$(NODE_STAMP): tests/strict_cp/package-lock.json
	cd tests/strict_cp && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

BROWSER_STAMP := $(VENV)/.browser
$(BROWSER_STAMP): | $(STAMP)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		echo "installing Debian chromium + chromium-driver (needs root)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi
	touch $(BROWSER_STAMP)

PG_BIN := /usr/lib/postgresql/15/bin
POSTGRES_STAMP := $(VENV)/.postgres
$(POSTGRES_STAMP): | $(STAMP)
	@if ! test -x $(PG_BIN)/initdb || ! test -x $(PG_BIN)/pg_ctl || ! id postgres >/dev/null 2>&1; then \
		echo "installing Debian postgresql-15 (needs root)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; \
	fi
	touch $(POSTGRES_STAMP)

test-deps: $(STAMP) $(NODE_STAMP) $(BROWSER_STAMP) $(POSTGRES_STAMP)

pytest: test-deps
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(STAMP)
	bash scripts/demo.sh

bench: $(STAMP)
	$(BIN)/csms bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache tests/strict_cp/node_modules
