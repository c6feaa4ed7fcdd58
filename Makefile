# Two commands: `make run` (the whole stack) and `make test` (lint, then the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint format clean bench bench-setup

setup: $(STAMP)
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server with apt-get"; \
		apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	@# Deployment tests: RabbitMQ as the other broker, docker-compose to validate
	@# the compose file, iproute2 and util-linux for the multi-host namespaces;
	@# chromium for the dashboard's browser test; wrk for the bench's own smoke tests.
	@missing=""; \
	for pair in rabbitmq-server:rabbitmq-server docker-compose:docker-compose \
		ip:iproute2 unshare:util-linux chromium:chromium wrk:wrk; do \
		command -v $${pair%%:*} >/dev/null || [ -x /usr/sbin/$${pair%%:*} ] || \
			missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[local,test]'
	touch $(STAMP)

run: setup
	$(BIN)/jobline up

lint: setup
	$(BIN)/ruff check jobline tests bench
	$(BIN)/ruff format --check jobline tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Two pytest processes, each with servers of its own; a module's tests stay in one
# (they share module fixtures). TEST_PROCESSES=1 runs the suite in one process.
TEST_PROCESSES ?= 2
test: setup lint
	$(BIN)/pytest --numprocesses=$(TEST_PROCESSES) --dist=loadfile

# Benchmarks: jobline beside raw Celery, RQ, Dramatiq and the two designs it replaces; 4-15 minutes on 2 cores.
# BENCH_ARGS=--quick for a smoke run. Writes bench/results/latest.json and docs/bench.png.
BENCH_STAMP := $(VENV)/.bench-installed
bench-setup: setup $(BENCH_STAMP)

$(BENCH_STAMP): pyproject.toml
	$(BIN)/pip install -q -e '.[local,test,bench]'
	touch $(BENCH_STAMP)

bench: bench-setup
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.plot

format: setup
	$(BIN)/ruff format jobline tests bench
	$(BIN)/ruff check --fix jobline tests bench

clean:
	rm -rf $(VENV) .jobline .pytest_cache .mypy_cache .ruff_cache
