# nylas-sync: the two commands a user needs are `make dev` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
CARGO ?= cargo
ARGS ?=

.PHONY: dev demo serve test lint fmt deps events clean

## make dev: the main job on a laptop. Starts moto and the Nylas emulator, runs the real functions
## for four sync strategies on the same traffic (default scenario: outage) and prints the report
## (also reports/report.html). Flags pass through: make dev ARGS='--scenario chaos --report-json out.json'
dev: deps
	tests/with-moto $(CARGO) run -q -p local-stack -- $(ARGS)

## make demo: the ingest alone on 127.0.0.1:9000, fed signed, gzip, oversized and forged samples.
demo: deps
	tests/with-moto $(CARGO) run -q -p local-stack -- --demo $(ARGS)

## make serve: the ingest alone, left running for curl or your own sender (Ctrl-C to stop).
serve: deps
	MOTO_PORT=$${MOTO_PORT:-5000} tests/with-moto $(CARGO) run -q -p local-stack -- --serve $(ARGS)

## make test: unit, property, emulator and moto-backed integration tests (moto started for the run).
test: deps
	tests/with-moto $(CARGO) test --workspace --locked $(ARGS)

## make lint: formatting and clippy, warnings are errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## Python tools the local stack and tests need (moto, the AWS emulator).
deps:
	@$(PYTHON) -c 'import moto.server' 2>/dev/null || $(PYTHON) -m pip install --quiet 'moto[server]>=5.1,<6'

## Regenerate the sample API Gateway events (signed with local-dev-secret).
events:
	$(PYTHON) events/generate.py

clean:
	$(CARGO) clean
