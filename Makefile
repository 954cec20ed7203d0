# nylas-sync: the two commands a user needs are `make dev` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
CARGO ?= cargo
ARGS ?=

.PHONY: dev serve test lint fmt deps events clean

## make dev: the main job on a laptop. Starts moto, hosts the real ingest on 127.0.0.1:9000 and
## runs the demo (signed, gzip, oversized and forged notifications), printing what reached SQS/S3.
dev: deps
	tests/with-moto $(CARGO) run -q -p local-stack -- --demo $(ARGS)

## make serve: the same host, left running for curl or your own sender (Ctrl-C to stop).
serve: deps
	MOTO_PORT=$${MOTO_PORT:-5000} tests/with-moto $(CARGO) run -q -p local-stack -- $(ARGS)

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
