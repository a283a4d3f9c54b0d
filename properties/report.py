"""What a property run did, for the summary at the end and for the mutant table.

Each state machine counts its examples, steps and faults here while it runs;
the properties' conftest adds each test's outcome, prints the summary table,
and writes it as JSON to `.bullproof/reports/` so `make mutants` can read which
invariant failed, when, and how short the shrunk counterexample was.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPORT_DIR = Path(__file__).resolve().parents[1] / ".bullproof" / "reports"
SESSION_STARTED = time.monotonic()


@dataclass
class PropertyStats:
    name: str
    examples: int = 0
    steps: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    outcome: str = "not run"
    invariant: str | None = None
    message: str | None = None
    first_failure_s: float | None = None
    last_example_steps: int = 0
    counterexample_steps: int | None = None
    history: str | None = None
    schedule: list[dict[str, Any]] = field(default_factory=list)
    replay: str | None = None

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["faults"] = dict(self.faults)
        return raw


STATS: dict[str, PropertyStats] = {}


def stats(name: str) -> PropertyStats:
    if name not in STATS:
        STATS[name] = PropertyStats(name)
    return STATS[name]


def new_example(name: str) -> None:
    s = stats(name)
    s.examples += 1
    s.last_example_steps = 0


def step(name: str) -> None:
    s = stats(name)
    s.steps += 1
    s.last_example_steps += 1


def fault(name: str, kind: str) -> None:
    stats(name).faults[kind] += 1


def failed(name: str, invariant: str) -> None:
    """Note a failure the first time an invariant trips (time to detect)."""
    s = stats(name)
    if s.first_failure_s is None:
        s.first_failure_s = time.monotonic() - SESSION_STARTED
    s.invariant = s.invariant or invariant


_INVARIANT = re.compile(r"AssertionError: ([a-z][a-z -]+?)(?: \(|:)")


def invariant_of(text: str) -> str | None:
    """The invariant named by the first AssertionError in a failure's text."""
    match = _INVARIANT.search(text)
    return match.group(1) if match else None


_BLOB = re.compile(r"@reproduce_failure\('([^']+)', b'([^']+)'\)")


def reproduce_blob(text: str) -> tuple[str, str] | None:
    match = _BLOB.search(text)
    return (match.group(1), match.group(2)) if match else None


def started() -> None:
    """Count times to detect from now: the harness is up."""
    global SESSION_STARTED
    SESSION_STARTED = time.monotonic()


RULE_CALL = re.compile(r"^\s*(?:\S.*= )?state\.(\w+)\(", re.MULTILINE)
NOT_RULES = frozenset({"teardown", "no_duplicate_effects"})


def counterexample_steps(text: str) -> int | None:
    """Rules in the final failing program Hypothesis printed (1 for a test
    that is not a state machine but printed a falsifying example)."""
    calls = [m for m in RULE_CALL.findall(text) if m not in NOT_RULES]
    if calls:
        return len(calls)
    if "Failing test case" in text or "Falsifying example" in text:
        return 1
    return None


_ASSERTION = re.compile(r"AssertionError: (.+)")


def assertion_of(text: str) -> str | None:
    match = _ASSERTION.search(text)
    return match.group(1)[:500] if match else None


def write(path: Path | None = None) -> Path:
    target = path or Path(
        os.environ.get("BULLPROOF_REPORT") or REPORT_DIR / "last-run.json"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps({n: s.to_dict() for n, s in STATS.items()}, indent=2))
    tmp.replace(target)
    return target


def table() -> list[str]:
    rows = [("property", "examples", "steps", "faults", "outcome")]
    for s in STATS.values():
        faults = ", ".join(f"{k} {v}" for k, v in sorted(s.faults.items())) or "-"
        outcome = s.outcome if s.invariant is None else f"{s.outcome} ({s.invariant})"
        rows.append((s.name, str(s.examples), str(s.steps), faults, outcome))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True))
        + "  "
        + r[4]
        for r in rows
    ]
