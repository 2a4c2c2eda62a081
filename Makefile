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

# Test-only tools outside PyPI: an independent OCPP implementation (npm: ocpp-rpc) and
# Debian's Chromium + ChromeDriver for the monitor's real-browser smoke test.
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

test-deps: $(STAMP) $(NODE_STAMP) $(BROWSER_STAMP)

pytest: test-deps
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(STAMP)
	bash scripts/demo.sh

bench: $(STAMP)
	$(BIN)/csms bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache tests/strict_cp/node_modules
