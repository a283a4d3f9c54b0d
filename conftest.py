"""Shared pytest set-up: the topology option and fixture, Hypothesis profiles.

`--topology local` (the default) runs every server as a child process of this
run. The session's topology starts once, the first time a test asks for it,
and stops when the run ends, also on Ctrl-C.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings

from chaos.topology import PROVIDERS, Topology, create

# Every example runs on real servers: no deadline, and slow data generation
# is expected, not a health problem.
_REAL_SERVERS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
# Reproducible runs that print the blob a failure replays from.
_REPRODUCIBLE = {**_REAL_SERVERS, "derandomize": True, "print_blob": True}

settings.register_profile(
    "dev", max_examples=10, stateful_step_count=15, **_REAL_SERVERS
)
settings.register_profile(
    "ci", max_examples=25, stateful_step_count=20, **_REPRODUCIBLE
)
settings.register_profile(
    "mutants", max_examples=15, stateful_step_count=20, **_REPRODUCIBLE
)
settings.register_profile(
    "nightly",
    max_examples=300,
    stateful_step_count=50,
    print_blob=True,
    phases=list(Phase),
    **_REAL_SERVERS,
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--topology",
        default=os.environ.get("BULLPROOF_TOPOLOGY", "local"),
        choices=PROVIDERS,
        help="where the system under test runs (default: local processes)",
    )


@pytest.fixture(scope="session")
def topology(request: pytest.FixtureRequest) -> Iterator[Topology]:
    """The session's topology, started on first use and stopped at the end."""
    topo = create(request.config.getoption("--topology"))
    topo.start()
    try:
        yield topo
    finally:
        topo.stop()


@pytest.fixture
def healthy_topology(topology: Topology) -> Iterator[Topology]:
    """The session's topology, healed before and after the test that uses it."""
    topology.heal()
    yield topology
    topology.heal()
