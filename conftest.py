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

settings.register_profile(
    "dev",
    max_examples=10,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "mutants",
    max_examples=15,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "nightly",
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    print_blob=True,
    phases=list(Phase),
    suppress_health_check=[HealthCheck.too_slow],
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
