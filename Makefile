# bullproof: `make chaos` runs the suite against the reference system on the
# local topology; `make test` runs bullproof's own tests. Both set up first.

VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
RUN_ID := $(shell date +%s)-$(shell echo $$PPID)

.PHONY: setup chaos test test-fast lint bench mutants clean

setup:
	@./scripts/setup.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Fast tier only: pure code, no servers.
test-fast: setup
	$(PYTEST) -m "not slow" -q

test: setup lint
	@export BULLPROOF_RUN_ID=test-$(RUN_ID); \
	$(PYTEST) tests; rc=$$?; \
	$(PY) scripts/leftovers.py test-$(RUN_ID) || rc=1; \
	exit $$rc

chaos: setup
	@export BULLPROOF_RUN_ID=chaos-$(RUN_ID); \
	$(PYTEST) properties -p no:cacheprovider; rc=$$?; \
	$(PY) scripts/leftovers.py chaos-$(RUN_ID) || rc=1; \
	exit $$rc

# Every seeded bug in tests/mutants/ must be caught; the last line counts them.
mutants: setup
	@export BULLPROOF_RUN_ID=mutants-$(RUN_ID); \
	$(PY) -m tests.mutants --baseline; rc=$$?; \
	$(PY) scripts/leftovers.py mutants-$(RUN_ID) || rc=1; \
	exit $$rc

bench: setup
	@for b in topology pipeline findings suite; do \
	  if [ -f bench/$$b.py ]; then $(PY) -m bench.$$b || exit 1; fi; \
	done

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
