# Conveyor: two set-up commands, `make demo` and `make test`. Both build .venv from requirements.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the suite runs on this many worker processes (pytest-xdist); most of its time is spent waiting on real
# servers and app instances, so two workers halve it even on two cores. WORKERS=0 runs it in one process.
WORKERS ?= 2
# Tests run the CLI in children forked from one warm process per worker (tests/cli_forkserver.py);
# `make test CONVEYOR_TEST_CLI=spawn` starts a fresh interpreter for every command instead.
export CONVEYOR_TEST_CLI

.PHONY: demo test test-unit test-integration lint typecheck lock clean docs bench-router bench-rollback bench-rehearsal bench-masked-clone

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Conveyor needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n $(WORKERS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest -q -n $(WORKERS) -m integration

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

# Re-pin every dependency (needs network); commit the result.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --extra dev --strip-extras -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Regenerate the reference pages that are built from the code (tests fail when they drift).
docs: $(STAMP)
	$(BIN)/python -m conveyor.api.reference > docs/reference/api.md
	$(BIN)/python -m conveyor.spec.reference docs/reference/conveyor-yaml.md
	$(BIN)/typer conveyor.cli.main utils docs --name conveyor --output docs/reference/cli.md

# Router vs the app directly vs HAProxy, side by side; appends to benchmarks/RESULTS.md (~7 min).
# Needs Debian's wrk and haproxy: apt-get install -y wrk haproxy
bench-router: $(STAMP)
	$(BIN)/python benchmarks/router/bench.py

# How fast a canary that starts failing loses its traffic (real server, default 5 s analysis); appends to benchmarks/RESULTS.md (~4 min).
bench-rollback: $(STAMP)
	$(BIN)/python benchmarks/rollback_reaction/bench.py

# The migration-rehearsal gate on a 1,000,000-row table next to applying the same migrations directly;
# appends to benchmarks/RESULTS.md (~1 min).
bench-rehearsal: $(STAMP)
	$(BIN)/python benchmarks/migration_rehearsal/bench.py

# A masked clone (conveyor data clone) vs plain pg_dump -Fc | pg_restore of the same 1,000,000-row
# database, side by side; ROWS=N for another size; appends to benchmarks/RESULTS.md (~5 min).
ROWS ?= 1000000
bench-masked-clone: $(STAMP)
	$(BIN)/python benchmarks/masked_clone/bench.py --rows $(ROWS)
