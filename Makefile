# modelmill — operations targets (issue 6). The lead's targets (run, test, ...) live beside these.
PY ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: up down stack-status ui browser-deps test-ops bench-skip

up:            ## local stack on 127.0.0.1: Prefect server + process worker + MLflow server; deploys prefect.yaml
	$(PY) -m flows.stack up

down:          ## stop exactly the processes `make up` started (by PID)
	$(PY) -m flows.stack down

stack-status:  ## ports and PIDs of the running stack
	$(PY) -m flows.stack status

ui:            ## MLflow UI over the embedded store (without the full stack)
	$(PY) -m flows.cli ui

browser-deps:  ## Debian's headless Chromium for the browser tests (root; no browser download by Playwright)
	apt-get install -y --no-install-recommends chromium chromium-driver

test-ops:      ## the operations tests: real servers, real browser, PostgreSQL
	$(PY) -m pytest tests/ops -q

bench-skip:    ## cost of an unchanged nightly run vs a full run
	$(PY) bench/skip.py
