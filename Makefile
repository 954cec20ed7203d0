# nylas-sync: the two commands a user needs are `make dev` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
CARGO ?= cargo
ARGS ?=
# Where cargo lambda puts the bootstraps (it follows CARGO_TARGET_DIR).
LAMBDA_DIR ?= $(or $(CARGO_TARGET_DIR),target)/lambda

.PHONY: dev demo serve test conformance check-infra build bench lint fmt deps deps-infra deps-build events clean

## make dev: the main job on a laptop. Starts moto and the Nylas emulator, runs the real functions
## for four sync strategies on the same traffic (default scenario: day, about 5 minutes) and prints the report
## (also reports/report.html). Flags pass through: make dev ARGS='--scenario chaos --report-json out.json'
dev: deps
	tests/with-moto $(CARGO) run -q -p local-stack -- $(ARGS)

## make demo: the ingest alone on 127.0.0.1:9000, fed signed, gzip, oversized and forged samples.
demo: deps
	tests/with-moto $(CARGO) run -q -p local-stack -- --demo $(ARGS)

## make serve: the ingest alone, left running for curl or your own sender (Ctrl-C to stop).
serve: deps
	MOTO_PORT=$${MOTO_PORT:-5000} tests/with-moto $(CARGO) run -q -p local-stack -- --serve $(ARGS)

## make test: unit, property, emulator and moto-backed integration and scenario tests (moto started
## for the run), the SDK conformance suite (make conformance), the template checks (cfn-lint,
## sam validate --lint) and the Lambda build
## (cargo lambda build --release --arm64; SKIP_LAMBDA_BUILD=1 skips it for a quick local loop).
test: deps
	tests/with-moto $(CARGO) test --workspace --locked $(ARGS)
	$(MAKE) conformance
	$(MAKE) check-infra
	@if [ -z "$$SKIP_LAMBDA_BUILD" ]; then $(MAKE) build; else echo "SKIP_LAMBDA_BUILD set: arm64 build skipped"; fi

## make conformance: the emulator driven by the official Nylas Python SDK (nylas==6.18.0), its
## answers and notifications checked against Nylas's published API (tests/conformance/README.md).
NYLAS_EMULATOR_BIN ?= $(or $(CARGO_TARGET_DIR),target)/debug/nylas-emulator
conformance:
	$(CARGO) build -p nylas-emulator --locked
	@$(PYTHON) -c 'import importlib.metadata as m, pytest; assert m.version("nylas") == "6.18.0"' 2>/dev/null \
	  || $(PYTHON) -m pip install --quiet -r tests/conformance/requirements.txt
	NYLAS_EMULATOR_BIN=$(NYLAS_EMULATOR_BIN) $(PYTHON) -B -m pytest tests/conformance -q -p no:cacheprovider

## The template is valid CloudFormation and valid SAM (both linters clean).
check-infra: deps-infra
	cfn-lint infra/template.yaml
	sam validate --lint -t infra/template.yaml --region us-east-1

## make build: the four bootstraps for Lambda (arm64, release), as sam build makes them,
## checked to exist in target/lambda/<function>/bootstrap.
build: deps-build
	cargo lambda build --release --arm64 --locked --bin ingest --bin consumer --bin scheduler --bin reconciler
	@for f in ingest consumer scheduler reconciler; do \
	  b=$(LAMBDA_DIR)/$$f/bootstrap; \
	  test -x $$b || { echo "missing $$b"; exit 1; }; \
	  echo "$$b: $$(stat -c %s $$b) bytes"; \
	done

## make bench: every figure of BENCHMARKS.md from one command (release builds, criterion, then the
## whole-process benchmarks against a fresh moto each); writes them into BENCHMARKS.md. Tens of
## minutes. BENCH_QUICK=1 for short runs that try the harness.
bench: deps deps-build
	tests/bench/run

## make lint: formatting and clippy, warnings are errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## Python tools the local stack and tests need (moto, the AWS emulator).
deps:
	@$(PYTHON) -c 'import moto.server' 2>/dev/null || $(PYTHON) -m pip install --quiet 'moto[server]>=5.1,<6'
	@$(PYTHON) -c 'import samtranslator' 2>/dev/null || $(PYTHON) -m pip install --quiet cfn-lint

deps-infra:
	@command -v cfn-lint >/dev/null || $(PYTHON) -m pip install --quiet cfn-lint
	@command -v sam >/dev/null || $(PYTHON) -m pip install --quiet aws-sam-cli

deps-build:
	@command -v cargo-lambda >/dev/null || $(PYTHON) -m pip install --quiet cargo-lambda ziglang
	@rustup target list --installed 2>/dev/null | grep -q aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

## Regenerate the sample API Gateway events (signed with local-dev-secret).
events:
	$(PYTHON) events/generate.py

clean:
	$(CARGO) clean
