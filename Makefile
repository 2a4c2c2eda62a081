# GarageGrid: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DB ?= garagegrid.db
export GARAGEGRID_DATABASE_URL ?= sqlite+aiosqlite:///$(DB)

.PHONY: demo test lint typecheck pytest venv bench clean

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

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/csms db upgrade
	$(BIN)/csms serve --auto-register

bench: $(STAMP)
	$(BIN)/csms bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
