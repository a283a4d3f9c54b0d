"""Faults by name, and the nemesis that starts them and heals them all.

`FAULTS` maps each fault's name to its class; schedules and state machines
pick faults from it. A `Nemesis` starts faults on one topology, writes each
start and stop to the run's history, remembers which faults are active, and
`heal_all()` stops every one of them and heals the topology, also after a
failed test.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from chaos.errors import ConfigurationError, HarnessError
from chaos.faults.base import (
    Fault,
    FaultContext,
    FaultRecord,
    KnownTargets,
    Param,
)
from chaos.faults.crash import Crash
from chaos.faults.duplicate import DuplicateSubmission
from chaos.faults.kill import Kill
from chaos.faults.partition import CutClient, CutPostgres, Partition, SplitBrain
from chaos.faults.toxics import TOXIC_FAULTS
from chaos.faults.worker import KillWorker, PauseWorker

if TYPE_CHECKING:
    from chaos.history import History
    from chaos.topology.base import Topology

logger = logging.getLogger(__name__)

_BUILT_IN: tuple[type[Fault], ...] = (
    Kill,
    Crash,
    Partition,
    SplitBrain,
    CutClient,
    CutPostgres,
    *TOXIC_FAULTS,
    KillWorker,
    PauseWorker,
    DuplicateSubmission,
)
FAULTS: dict[str, type[Fault]] = {cls.name: cls for cls in _BUILT_IN}


def register(cls: type[Fault]) -> type[Fault]:
    """Add a fault class to `FAULTS` under its name (usable as a decorator)."""
    existing = FAULTS.get(cls.name)
    if existing is not None and existing is not cls:
        raise ConfigurationError(
            f"fault name {cls.name!r} is taken by {existing.__qualname__}"
        )
    FAULTS[cls.name] = cls
    return cls


def fault_class(name: str) -> type[Fault]:
    try:
        return FAULTS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown fault {name!r}; known faults: {', '.join(sorted(FAULTS))}"
        ) from None


class Nemesis:
    """Starts and stops faults on one topology and heals whatever is left.

    Use it as a context manager (leaving heals everything), or call
    `heal_all()` in a teardown.
    """

    process = "nemesis"

    def __init__(
        self,
        topology: Topology,
        *,
        history: History | None = None,
        context: FaultContext | None = None,
        heal_timeout: float | None = None,
    ):
        self.topology = topology
        self.history = history
        self.context = context or FaultContext()
        self.heal_timeout = heal_timeout
        self.active: list[Fault] = []
        self.records: list[FaultRecord] = []

    def __enter__(self) -> Nemesis:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.heal_all()

    def known_targets(self) -> KnownTargets:
        return KnownTargets.of(
            self.topology, self.context.workers, self.context.submitters
        )

    def create(
        self, fault: str, target: str, params: Mapping[str, Any] | None = None
    ) -> Fault:
        """A fault, checked but not started."""
        return fault_class(fault)(self.topology, target, params, self.context)

    def start(
        self, fault: str, target: str, params: Mapping[str, Any] | None = None
    ) -> Fault:
        """Start fault `fault` on `target`; the active fault is returned."""
        instance = self.create(fault, target, params)
        self._run(instance, "start")
        self.active.append(instance)
        return instance

    def stop(self, fault: Fault) -> FaultRecord:
        if fault not in self.active:
            raise HarnessError(f"{fault!r} was not started by this nemesis")
        self.active.remove(fault)
        return self._run(fault, "stop")

    def _run(self, fault: Fault, action: str) -> FaultRecord:
        invocation = None
        if self.history is not None:
            invocation = self.history.invoke(
                self.process,
                f"{action}:{fault.name}",
                {"target": fault.target, "params": dict(fault.params)},
            )
        try:
            record = fault.start() if action == "start" else fault.stop()
        except BaseException as exc:
            if self.history is not None and invocation is not None:
                self.history.complete(
                    invocation, "fail", {"error": f"{type(exc).__name__}: {exc}"}
                )
            raise
        self.records.append(record)
        if self.history is not None and invocation is not None:
            self.history.complete(invocation, "ok", record.to_dict())
        return record

    def heal_all(self) -> list[FaultRecord]:
        """Stop every active fault, newest first, then heal the topology.

        Every error is gathered and raised once at the end, after the
        topology's own heal has had its chance to repair what a fault's stop
        could not.
        """
        errors = []
        records = []
        while self.active:
            fault = self.active[-1]
            try:
                records.append(self.stop(fault))
            except Exception as exc:  # gather, then report once
                errors.append(f"{fault!r}: {exc}")
        try:
            done = self.topology.heal(self.heal_timeout)
        except Exception as exc:
            errors.append(f"topology heal: {exc}")
        else:
            if self.history is not None:
                self.history.info(self.process, "heal", {"done": done})
        if errors:
            raise HarnessError("healing failed: " + " | ".join(errors))
        return records


__all__ = [
    "FAULTS",
    "Fault",
    "FaultContext",
    "FaultRecord",
    "KnownTargets",
    "Nemesis",
    "Param",
    "fault_class",
    "register",
]
