# Two commands: `make run` (the whole stack) and `make test` (lint, then the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint format clean

setup: $(STAMP)
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server with apt-get"; \
		apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	@command -v chromium >/dev/null || { \
		echo "installing chromium (for the dashboard test) with apt-get"; \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[local,test]'
	touch $(STAMP)

run: setup
	$(BIN)/jobline up

lint: setup
	$(BIN)/ruff check jobline tests
	$(BIN)/ruff format --check jobline tests
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest

format: setup
	$(BIN)/ruff format jobline tests
	$(BIN)/ruff check --fix jobline tests

clean:
	rm -rf $(VENV) .jobline .pytest_cache .mypy_cache .ruff_cache
