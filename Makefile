# procall developer commands. Every target creates .venv and installs what is missing first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup proto proto-check contracts-image breaking lint format test test-slow test-fast test-system up bench clean

setup: $(STAMP)

$(STAMP): requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

proto: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

proto-check: $(STAMP)
	$(BIN)/python scripts/gen_protos.py --check
	cd proto && ../$(BIN)/buf lint && ../$(BIN)/buf format --diff --exit-code

# The published contracts: an image of proto/ committed in contracts/published.binpb. A change
# that breaks a published contract fails `make lint` unless the image is updated on purpose in
# the same change (`make contracts-image`, reviewed like any other change to the contracts).
contracts-image: $(STAMP)
	cd proto && ../$(BIN)/buf build --exclude-source-info -o ../contracts/published.binpb

breaking: $(STAMP)
	cd proto && ../$(BIN)/buf breaking --against ../contracts/published.binpb

lint: $(STAMP)
	$(BIN)/ruff check procall tests scripts
	$(BIN)/ruff format --check procall tests scripts
	$(BIN)/mypy
	cd proto && ../$(BIN)/buf lint && ../$(BIN)/buf format --diff --exit-code
	cd proto && ../$(BIN)/buf breaking --against ../contracts/published.binpb

format: $(STAMP)
	$(BIN)/ruff check --fix procall tests scripts
	$(BIN)/ruff format procall tests scripts
	cd proto && ../$(BIN)/buf format -w

# The whole suite: unit, integration and the slower system tests (real processes), each
# part in its own interpreter so that one part's leftover gRPC state cannot affect another.
test: $(STAMP)
	$(BIN)/pytest tests/unit
	$(BIN)/pytest tests/integration -m "not slow"
	$(BIN)/pytest tests/system -m "not slow"

# The long scenarios `make test` leaves out (benchmark smoke runs, the 200-user rebalance,
# crash drills with real processes); CI runs them after `make test`.
test-slow: $(STAMP)
	$(BIN)/pytest -m slow

test-fast: $(STAMP)
	$(BIN)/pytest -m "not system"

test-system: $(STAMP)
	$(BIN)/pytest -m system

# `make up ARGS="--ucservers 3 --data-dir /tmp/dc"` passes ARGS on to `procall up`
up: $(STAMP)
	$(BIN)/procall up $(ARGS)

bench: $(STAMP)
	$(BIN)/procall bench

clean:
	rm -rf .procall .pytest_cache .mypy_cache .ruff_cache
