"""The properties' session: one harness, the summary table, replay commands.

`BULLPROOF_MUTANT=<name>` runs every property against a seeded bug from
`tests/mutants/`. `BULLPROOF_REPRODUCE="<version> <blob>"` replays the exact
failing example that a failed run printed.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import reproduce_failure

from chaos.topology import Topology
from properties import harness as harness_module
from properties import report

REPRODUCE_ENV = "BULLPROOF_REPRODUCE"
REPLAYS: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # Each shrink of a state machine example re-runs it on real servers, a
    # few seconds apiece; bound the whole shrink so a failing run ends.
    from hypothesis.internal.conjecture import engine

    engine.MAX_SHRINKING_SECONDS = int(os.environ.get("BULLPROOF_MAX_SHRINK_S", "180"))


@pytest.fixture(scope="session")
def harness(
    topology: Topology, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness_module.Harness]:
    history = Path(
        os.environ.get("BULLPROOF_HISTORY")
        or tmp_path_factory.mktemp("history") / "history.jsonl"
    )
    h = harness_module.Harness(topology, history)
    harness_module.CURRENT = h
    report.started()
    try:
        yield h
    finally:
        harness_module.CURRENT = None
        h.close()


@pytest.fixture(autouse=True)
def _session_harness(harness: harness_module.Harness) -> harness_module.Harness:
    """Every property runs against the session's harness."""
    return harness


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reproduce = os.environ.get(REPRODUCE_ENV, "").split()
    if len(reproduce) != 2:
        if reproduce:
            raise pytest.UsageError(
                f'{REPRODUCE_ENV} must be "<hypothesis version> <blob>", as printed '
                "by the failed run"
            )
        return
    replay = reproduce_failure(reproduce[0], reproduce[1].encode())
    for item in items:
        run = getattr(getattr(item, "cls", None), "runTest", None)
        machine = getattr(run, "_hypothesis_state_machine_class", None)
        if machine is not None:
            replay(machine)
        elif hasattr(getattr(item, "obj", None), "hypothesis"):
            replay(item.obj)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    result = yield
    rep: pytest.TestReport = result  # type: ignore[assignment]
    if rep.when != "call":
        return result
    name = getattr(item.module, "PROPERTY", item.name)
    stats = report.stats(name)
    if rep.passed:
        stats.outcome = "passed" if stats.outcome != "failed" else stats.outcome
    elif rep.failed:
        text = str(rep.longrepr)
        stats.outcome = "failed"
        stats.invariant = stats.invariant or report.invariant_of(text)
        stats.message = report.assertion_of(text)
        stats.counterexample_steps = report.counterexample_steps(text)
        blob = report.reproduce_blob(text)
        mutant = os.environ.get(harness_module.MUTANT_ENV)
        env = f"{harness_module.MUTANT_ENV}={mutant} " if mutant else ""
        if blob is not None:
            env += f"{REPRODUCE_ENV}={shlex.quote(' '.join(blob))} "
        stats.replay = (
            f"{env}{Path(sys.executable).parent / 'pytest'} "
            f"{shlex.quote(item.nodeid)} -p no:cacheprovider"
        )
        REPLAYS.append(stats.replay)
    return result


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not report.STATS:
        return
    path = report.write()
    terminalreporter.section("bullproof properties")
    for line in report.table():
        terminalreporter.write_line(line)
    for stats in report.STATS.values():
        if stats.outcome == "failed":
            terminalreporter.write_line("")
            terminalreporter.write_line(f"{stats.name} failed: {stats.invariant}")
            if stats.schedule:
                terminalreporter.write_line(f"  fault schedule: {stats.schedule}")
            if stats.history:
                terminalreporter.write_line(f"  history: {stats.history}")
            if stats.replay:
                terminalreporter.write_line(f"  replay: {stats.replay}")
    terminalreporter.write_line(f"report: {path}")
