"""The run's history: every operation and fault, appended as JSON lines.

Each line is one event: `time` (wall clock, seconds), `process` (who acted:
a producer task, a worker, the nemesis), `kind`, `op` (the operation or fault
name), `value`, and `outcome`. An operation is two events, Jepsen style: an
`invoke` when it begins and a `complete` when its result is known, paired by
`op_id`. The outcome of a completion is `ok` (it happened), `fail` (it
certainly did not) or `unknown` (a timeout or a lost connection hid the
result: it may have happened). An `info` event records something that is not
an operation, such as a failover seen.

Writing is safe from several asyncio tasks and threads at once: each event is
one `write` of one line under a lock, flushed at once, so a crash leaves at
most a truncated last line, which `read_history` skips.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from chaos.errors import HarnessError

logger = logging.getLogger(__name__)

Kind = Literal["invoke", "complete", "info"]
Outcome = Literal["ok", "fail", "unknown"]
KINDS = ("invoke", "complete", "info")
OUTCOMES = ("ok", "fail", "unknown")

# A result hidden by these may or may not have taken effect.
UNKNOWN_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)


@dataclass(frozen=True)
class Event:
    """One line of the history."""

    index: int
    time: float
    process: str
    kind: Kind
    op: str
    value: Any = None
    outcome: Outcome | None = None
    op_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "time": self.time,
            "process": self.process,
            "kind": self.kind,
            "op": self.op,
            "value": self.value,
            "outcome": self.outcome,
            "op_id": self.op_id,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        kind = raw["kind"]
        outcome = raw.get("outcome")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind == "complete" and outcome not in OUTCOMES:
            raise ValueError(f"a completion needs an outcome in {OUTCOMES}")
        if kind != "complete" and outcome is not None:
            raise ValueError(f"an {kind} event has no outcome, got {outcome!r}")
        return cls(
            index=int(raw["index"]),
            time=float(raw["time"]),
            process=str(raw["process"]),
            kind=kind,
            op=str(raw["op"]),
            value=raw.get("value"),
            outcome=outcome,
            op_id=raw.get("op_id"),
        )


def _to_json(event: Event) -> str:
    # default=repr: a value that JSON cannot hold is still recorded, as text.
    return json.dumps(event.to_dict(), default=repr, separators=(",", ":"))


class History:
    """An append-only history file. Use as a context manager, or `close()` it."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        _drop_truncated_tail(self.path)
        existing = read_history(self.path)
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        start = max((e.index for e in existing), default=-1) + 1
        self._index = itertools.count(start)
        self._op_ids = itertools.count(
            max((e.op_id or 0 for e in existing), default=0) + 1
        )

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _append(
        self,
        process: str,
        kind: Kind,
        op: str,
        value: Any,
        outcome: Outcome | None,
        op_id: int | None,
    ) -> Event:
        with self._lock:
            if self._file is None:
                raise HarnessError(f"history {self.path} is closed")
            event = Event(
                index=next(self._index),
                time=time.time(),
                process=process,
                kind=kind,
                op=op,
                value=value,
                outcome=outcome,
                op_id=op_id,
            )
            self._file.write(_to_json(event) + "\n")
            self._file.flush()
        return event

    def invoke(self, process: str, op: str, value: Any = None) -> Event:
        """Record that `process` begins `op`; complete it with the returned op_id."""
        with self._lock:
            op_id = next(self._op_ids)
        return self._append(process, "invoke", op, value, None, op_id)

    def complete(self, invocation: Event, outcome: Outcome, value: Any = None) -> Event:
        """Record how the operation begun by `invocation` ended."""
        if invocation.kind != "invoke":
            raise HarnessError(f"can only complete an invoke event, not {invocation}")
        if outcome not in OUTCOMES:
            raise HarnessError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        return self._append(
            invocation.process,
            "complete",
            invocation.op,
            value,
            outcome,
            invocation.op_id,
        )

    def info(self, process: str, op: str, value: Any = None) -> Event:
        """Record something that happened and is not an operation."""
        return self._append(process, "info", op, value, None, None)

    @contextlib.contextmanager
    def operation(
        self, process: str, op: str, value: Any = None
    ) -> Iterator[Operation]:
        """Invoke on entry, complete on exit.

        The body may call `ok()`, `fail()` or `unknown()` on the yielded
        operation. If it does not: a normal exit is `ok`; a timeout or a lost
        connection is `unknown`; any other exception is also `unknown` unless
        the body said `fail` first, because an error alone does not prove the
        operation had no effect. The exception is re-raised.
        """
        operation = Operation(self, self.invoke(process, op, value))
        try:
            yield operation
        except BaseException as exc:
            if operation.completion is None:
                operation.unknown({"error": f"{type(exc).__name__}: {exc}"})
            raise
        if operation.completion is None:
            operation.ok()


class Operation:
    """An invoked operation, waiting for its completion."""

    def __init__(self, history: History, invocation: Event):
        self.history = history
        self.invocation = invocation
        self.completion: Event | None = None

    def _complete(self, outcome: Outcome, value: Any) -> Event:
        if self.completion is not None:
            raise HarnessError(f"operation {self.invocation.op_id} already completed")
        self.completion = self.history.complete(self.invocation, outcome, value)
        return self.completion

    def ok(self, value: Any = None) -> Event:
        return self._complete("ok", value)

    def fail(self, value: Any = None) -> Event:
        return self._complete("fail", value)

    def unknown(self, value: Any = None) -> Event:
        return self._complete("unknown", value)


def read_history(path: Path | str) -> list[Event]:
    """Every event in the file, in order.

    A last line without its newline was cut short by a crash and is skipped.
    Any other line that does not parse means the file is not a history, and
    raises naming the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    events = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")

    # After the last newline: empty if the file ended cleanly.
    tail = lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(Event.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise HarnessError(f"{path}:{number}: not a history event ({exc})") from exc
    if tail.strip():
        try:
            events.append(Event.from_dict(json.loads(tail)))
        except (ValueError, KeyError, TypeError):
            logger.info("%s: skipped a truncated last line (%d bytes)", path, len(tail))
    return events


def _drop_truncated_tail(path: Path) -> None:
    # Appending after a cut-short line would glue the next event onto it.
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
    logger.info("%s: dropped a truncated last line (%d bytes)", path, len(data) - keep)


def pair_operations(events: list[Event]) -> list[tuple[Event, Event | None]]:
    """Each invocation with its completion (None if it never completed)."""
    completions = {e.op_id: e for e in events if e.kind == "complete"}
    pairs = []
    invoked = set()
    for event in events:
        if event.kind == "invoke":
            if event.op_id in invoked:
                raise HarnessError(f"op_id {event.op_id} invoked twice")
            invoked.add(event.op_id)
            pairs.append((event, completions.get(event.op_id)))
    orphans = sorted(k or 0 for k in completions if k not in invoked)
    if orphans:
        raise HarnessError(f"completions without an invocation: op_id {orphans}")
    return pairs


def default_path(run_dir: Path | str, name: str = "history.jsonl") -> Path:
    """Where a run keeps its history: `run_dir/name`, the directory created."""
    directory = Path(run_dir)
    os.makedirs(directory, exist_ok=True)
    return directory / name
