# The two commands the README opens with:
#   make demo   set up and run the demo end to end on the embedded default (SQLite + embedded broker)
#   make test   set up, start Postgres and Redis if needed, lint, type-check and run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo run test install services lint typecheck pytest pytest-pooler clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: on Debian run 'apt-get install python3-venv'"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/switchboard demo

run: install
	$(BIN)/switchboard standalone

services:
	bash scripts/ensure-services.sh

lint: install
	$(BIN)/ruff check switchboard tests bench
	$(BIN)/ruff format --check switchboard tests bench

typecheck: install
	$(BIN)/mypy

pytest: install services
	$(BIN)/pytest $(PYTEST_ARGS)

# The Postgres tests of the run lifecycle, the orchestrator (locks, SKIP LOCKED), migrations and
# insights again, every database reached through PgBouncer in transaction mode (~75 s;
# tests/support/pgbouncer.py)
POOLER_TESTS := tests/integration/test_step_hooks.py tests/integration/test_orchestrator.py \
  tests/integration/test_agent_runs.py tests/integration/test_migrations.py tests/integration/test_adopt_schema.py \
  tests/integration/test_episodes.py tests/integration/test_insights.py
pytest-pooler: install services
	SWITCHBOARD_TEST_POOLER=pgbouncer $(BIN)/pytest $(POOLER_TESTS)

test: install services lint typecheck pytest pytest-pooler

clean:
	rm -rf $(VENV) .switchboard .pytest_cache .mypy_cache .ruff_cache
