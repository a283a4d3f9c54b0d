"""The mutant catalogue is well formed, and the suite catches a quick sample of
it end to end (`make mutants` runs the whole catalogue)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.mutants.__main__ import catalogue

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["random_job_ids", "replay_fresh_ids"]


def test_catalogue_has_at_least_eight_mutants_each_with_targets() -> None:
    names = catalogue()

    assert len(names) >= 8, f"only {len(names)} mutants: {names}"
    for name in names:
        source = (ROOT / "tests" / "mutants" / f"{name}.py").read_text()
        assert source.startswith('"""'), (
            f"mutant {name} has no docstring saying the bug"
        )
        assert "TARGETS = [" in source, f"mutant {name} names no target properties"


def test_unknown_mutant_is_a_usage_error() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.mutants", "no_such_bug"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 2, run.stderr
    assert "unknown mutants ['no_such_bug']" in run.stderr


@pytest.mark.slow
def test_quick_mutants_are_caught() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.mutants", *QUICK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )

    lines = run.stdout.strip().splitlines()
    assert lines and lines[-1] == f"mutants caught {len(QUICK)}/{len(QUICK)}", (
        run.stdout + run.stderr
    )
    assert run.returncode == 0
