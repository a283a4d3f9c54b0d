# bullproof: `make chaos` runs the suite against the reference system on the
# local topology; `make test` runs bullproof's own tests. Both set up first.

VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
RUN_ID := $(shell date +%s)-$(shell echo $$PPID)

.PHONY: setup chaos test test-fast lint bench mutants images clean

setup:
	@./scripts/setup.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Fast tier only: pure code, no servers.
test-fast: setup
	$(PYTEST) -m "not slow" -q

# bullproof's own tests; then, where a Docker engine answers, a failover
# property on the containers provider; then nothing of the run may be left.
test: setup lint
	@export BULLPROOF_RUN_ID=test-$(RUN_ID); \
	$(PYTEST) tests; rc=$$?; \
	if docker/engine.sh status >/dev/null 2>&1; then \
	  $(PYTEST) properties/test_failover.py --topology containers -q \
	    -p no:cacheprovider || rc=1; \
	  left=$$(docker ps -aq --filter label=bullproof.run); \
	  if [ -n "$$left" ]; then echo "bullproof containers left: $$left"; rc=1; fi; \
	else \
	  echo "containers: skipped the failover property (no Docker engine answers;" \
	    "make images starts one)"; \
	fi; \
	$(PY) scripts/leftovers.py test-$(RUN_ID) || rc=1; \
	exit $$rc

# Images of the containers provider and docker/compose.yaml, built from
# Debian's packages (debootstrap) where no registry is reachable. Installs
# Debian's docker.io and debootstrap if missing; starts the engine with no
# bridge and no iptables rules when none answers.
images: setup
	@command -v dockerd >/dev/null && command -v debootstrap >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null; }
	@docker/engine.sh status >/dev/null 2>&1 || docker/engine.sh start
	@docker/build-images.sh

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
