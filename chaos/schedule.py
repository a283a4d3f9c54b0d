"""Fault schedules: which faults to start when, as JSON data, checked before use.

A schedule is a list of entries, each
`{"fault": name, "target": name, "start": s, "duration": s, "params": {...}}`,
times in seconds from the start of the run. The whole schedule is checked
before anything happens: an unknown fault or target, a time that is negative
or not a number, a bad parameter, or the same fault on the same target twice
at once, and `parse` raises one `ConfigurationError` naming every bad entry
by index and fault. Only a schedule that passes is ever applied.

`run_schedule` applies one to a topology through a `Nemesis`: it starts each
fault at its time and stops it after its duration, in a fixed order (stops
before starts at the same instant, then by entry index), so the same schedule
gives the same faults. Every start and stop goes into the history. Whatever
happens, it heals everything at the end.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.errors import ConfigurationError
from chaos.faults import FAULTS, KnownTargets, Nemesis
from chaos.faults.base import Fault, FaultRecord

logger = logging.getLogger(__name__)

ENTRY_KEYS = ("fault", "target", "start", "duration", "params")


@dataclass(frozen=True)
class Entry:
    """One fault of a schedule: what, on what, from when, for how long."""

    index: int
    fault: str
    target: str
    start: float
    duration: float
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.start + self.duration

    def to_dict(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "target": self.target,
            "start": self.start,
            "duration": self.duration,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class Schedule:
    entries: tuple[Entry, ...]

    @property
    def length(self) -> float:
        """When the last fault ends, in seconds from the start."""
        return max((e.end for e in self.entries), default=0.0)

    def to_data(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.entries]

    def to_json(self) -> str:
        return json.dumps(self.to_data(), indent=2, sort_keys=True)

    def steps(self) -> list[tuple[float, str, Entry]]:
        """Every start and stop, in the order they are applied."""
        steps = [(e.start, "start", e) for e in self.entries]
        steps += [(e.end, "stop", e) for e in self.entries]

        # At the same instant, stop before start: a fault that ends when its
        # successor on the same target begins must be gone first. A fault of
        # no duration is the exception: it starts, then stops.
        def order(step: tuple[float, str, Entry]) -> tuple[float, int, int]:
            at, action, entry = step
            ranks = {"stop": 0 if entry.duration > 0 else 2, "start": 1}
            rank = ranks[action]
            return (at, rank, entry.index)

        return sorted(steps, key=order)


def _number(entry: Mapping[str, Any], key: str) -> tuple[float | None, str | None]:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"{key!r} must be a number of seconds, got {value!r}"
    if not math.isfinite(value):
        return None, f"{key!r} must be finite, got {value!r}"
    if value < 0:
        return None, f"{key!r} must be >= 0, got {value!r}"
    return float(value), None


def _entry(index: int, raw: Any, known: KnownTargets) -> tuple[Entry | None, list[str]]:
    if not isinstance(raw, Mapping):
        return None, [f"must be an object with {list(ENTRY_KEYS)}, got {raw!r}"]
    problems = []
    unknown = sorted(set(raw) - set(ENTRY_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {unknown}; allowed: {list(ENTRY_KEYS)}")

    name = raw.get("fault")
    cls = FAULTS.get(name) if isinstance(name, str) else None
    if cls is None:
        problems.append(
            f"unknown fault {name!r}; known faults: {', '.join(sorted(FAULTS))}"
        )

    target = raw.get("target")
    if not isinstance(target, str) or not target:
        problems.append(f"'target' must be a non-empty string, got {target!r}")
    elif cls is not None:
        problem = cls.check_target(target, known)
        if problem:
            problems.append(f"target {target!r}: {problem}")

    start, problem = _number(raw, "start")
    if problem:
        problems.append(problem)
    duration, problem = _number(raw, "duration")
    if problem:
        problems.append(problem)

    params: dict[str, Any] = {}
    if cls is not None:
        try:
            params = cls.check_params(raw.get("params", {}))
        except ValueError as exc:
            problems.append(str(exc))

    if problems:
        return None, problems
    assert isinstance(name, str) and isinstance(target, str)
    assert start is not None and duration is not None
    return Entry(index, name, target, start, duration, params), []


def _label(index: int, raw: Any) -> str:
    fault = raw.get("fault") if isinstance(raw, Mapping) else None
    return f"entry {index} ({fault!r})" if fault is not None else f"entry {index}"


def parse(data: Any, known: KnownTargets | None = None) -> Schedule:
    """A checked schedule from JSON text or already-decoded data.

    `known` says which nodes, links, clients and workers exist; by default
    the nodes and links every topology has, and no clients or workers.
    """
    known = known or KnownTargets()
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ConfigurationError(f"schedule is not valid JSON: {exc}") from exc
    if isinstance(data, Mapping) and "faults" in data:
        data = data["faults"]
    if not isinstance(data, Sequence) or isinstance(data, str):
        raise ConfigurationError(
            f"a schedule must be a list of entries, got {type(data).__name__}"
        )

    entries = []
    problems = []
    for index, raw in enumerate(data):
        entry, found = _entry(index, raw, known)
        problems += [f"{_label(index, raw)}: {p}" for p in found]
        if entry is not None:
            entries.append(entry)
    problems += _overlaps(entries)
    if problems:
        raise ConfigurationError(
            "schedule rejected, nothing applied:\n  " + "\n  ".join(problems)
        )
    return Schedule(tuple(entries))


def _overlaps(entries: list[Entry]) -> list[str]:
    # The same fault on the same target twice at once would start a fault
    # that is already active; caught here rather than half way through a run.
    problems = []
    for i, a in enumerate(entries):
        for b in entries[i + 1 :]:
            if (a.fault, a.target) != (b.fault, b.target):
                continue
            if a.start < b.end and b.start < a.end:
                problems.append(
                    f"entry {b.index} ({b.fault!r}): overlaps entry {a.index} on "
                    f"target {a.target!r} ({a.start:g}-{a.end:g} s and "
                    f"{b.start:g}-{b.end:g} s)"
                )
    return problems


def load(path: Path | str, known: KnownTargets | None = None) -> Schedule:
    return parse(Path(path).read_text(), known)


def apply(data: Any, nemesis: Nemesis, **kwargs: Any) -> list[FaultRecord]:
    """Check a schedule (JSON text or data) against `nemesis`'s topology, then
    run it. A schedule that fails the check raises before any fault starts."""
    return run_schedule(parse(data, nemesis.known_targets()), nemesis, **kwargs)


def run_schedule(
    schedule: Schedule,
    nemesis: Nemesis,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    heal: bool = True,
) -> list[FaultRecord]:
    """Apply `schedule` through `nemesis`; return every record in order.

    Faults start and stop on the calling thread, which must be the main
    thread when a fault restarts a server (see `chaos.process`). A fault that
    takes longer than the gap to the next step delays that step; the step's
    record carries the time it really happened.
    """
    # Checked again against what this topology really has (clients, workers).
    parse(schedule.to_data(), nemesis.known_targets())

    records: list[FaultRecord] = []
    active: dict[int, Fault] = {}

    # The schedule itself goes first into the history: a failing run can be
    # replayed from its history alone.
    if nemesis.history is not None:
        nemesis.history.info(nemesis.process, "schedule", schedule.to_data())
    t0 = clock()
    logger.info(
        "schedule of %d faults over %.1f s begins",
        len(schedule.entries),
        schedule.length,
    )
    try:
        for at, action, entry in schedule.steps():
            wait = t0 + at - clock()
            if wait > 0:
                sleep(wait)
            if action == "start":
                fault = nemesis.start(entry.fault, entry.target, entry.params)
                active[entry.index] = fault
                records.append(fault.records[-1])
            else:
                records.append(nemesis.stop(active.pop(entry.index)))
    finally:
        if heal:
            records += nemesis.heal_all()
    logger.info("schedule done: %d fault steps", len(records))
    return records


def from_history(path: Path | str) -> Schedule:
    """The schedule a run recorded at the head of its history."""
    from chaos.history import read_history

    for event in read_history(path):
        if event.kind == "info" and event.op == "schedule":
            return parse(event.value)
    raise ConfigurationError(f"{path} records no schedule")


def main(argv: list[str] | None = None) -> int:
    """`python -m chaos.schedule check|run FILE`: check a schedule, or run it on
    a fresh local topology. FILE is a schedule, or a history that holds one."""
    import argparse

    from chaos.history import History
    from chaos.topology import create

    parser = argparse.ArgumentParser(
        prog="python -m chaos.schedule",
        description="Check a fault schedule, or run it on a fresh local topology.",
    )
    parser.add_argument("action", choices=("check", "run"))
    parser.add_argument("file", type=Path, help="schedule JSON, or a history")
    parser.add_argument("--history", type=Path, help="write the run's history here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    try:
        if args.file.suffix == ".jsonl":
            schedule = from_history(args.file)
        else:
            schedule = load(args.file)
    except ConfigurationError as exc:
        print(exc)
        return 2
    if args.action == "check":
        print(f"ok: {len(schedule.entries)} faults over {schedule.length:g} s")
        return 0

    history = History(args.history) if args.history else None
    try:
        with create("local") as topology:
            records = run_schedule(schedule, Nemesis(topology, history=history))
    finally:
        if history is not None:
            history.close()
    for record in records:
        print(record.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
