"""What every fault shares: the start/stop pair, the record, parameter checks.

A fault breaks one part of a topology when it starts and undoes exactly that
when it stops. Each start and stop returns a `FaultRecord` saying what was
done (which nodes, which links, when) and what was seen (a new master, the
writes a crash lost), so the run's history can tell afterwards what happened.

Targets and parameters are checked by `check()` before anything runs, without
a topology, so a schedule can be rejected as a whole before its first fault.
Symbolic targets such as `master` are resolved only when the fault starts,
because the master changes under faults.
"""

from __future__ import annotations

import abc
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from chaos.errors import ConfigurationError, HarnessError
from chaos.topology.base import REDIS_NODES, SENTINEL_NODES

if TYPE_CHECKING:
    from chaos.topology.base import Topology

logger = logging.getLogger(__name__)

MASTER = "master"
REPLICA = "replica"


@dataclass(frozen=True)
class FaultRecord:
    """What one start or stop of a fault did and saw. `at` is wall-clock time."""

    fault: str
    target: str
    action: Literal["start", "stop"]
    at: float
    nodes: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    observed: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "target": self.target,
            "action": self.action,
            "at": self.at,
            "nodes": list(self.nodes),
            "links": list(self.links),
            "params": dict(self.params),
            "observed": dict(self.observed),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FaultRecord:
        return cls(
            fault=raw["fault"],
            target=raw["target"],
            action=raw["action"],
            at=float(raw["at"]),
            nodes=tuple(raw.get("nodes", ())),
            links=tuple(raw.get("links", ())),
            params=dict(raw.get("params", {})),
            observed=dict(raw.get("observed", {})),
        )


@dataclass(frozen=True)
class KnownTargets:
    """The names a schedule may target, known before any server starts.

    `clients` are names given to `Topology.add_client`; `workers` are worker
    processes the run will have. Both are empty unless the caller says.
    """

    nodes: frozenset[str] = frozenset(("postgres", *REDIS_NODES, *SENTINEL_NODES))
    links: frozenset[str] = frozenset(
        [
            f"{n}.{role}"
            for n in REDIS_NODES + SENTINEL_NODES
            for role in ("peer", "client")
        ]
        + ["postgres.client"]
    )
    clients: frozenset[str] = frozenset()
    workers: frozenset[str] = frozenset()
    submitters: frozenset[str] = frozenset({"place_order"})

    @classmethod
    def of(
        cls, topology: Topology, workers: Any = (), submitters: Any = ()
    ) -> KnownTargets:
        """What a started topology (and the given workers and submitters) offer."""
        clients = {
            link.split(".client.", 1)[1]
            for link in topology.links
            if ".client." in link
        }
        return cls(
            nodes=frozenset(n for n in topology.nodes if n != "toxiproxy"),
            links=frozenset(topology.links),
            clients=frozenset(clients),
            workers=frozenset(workers),
            submitters=frozenset({"place_order", *submitters}),
        )


@dataclass(frozen=True)
class Param:
    """One parameter of a fault: its type, default and allowed values."""

    kind: type
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    required: bool = False

    def check(self, name: str, value: Any) -> Any:
        if self.kind is float:
            # bool is an int in Python; a schedule saying `true` meant no number.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"param {name!r} must be a number, got {value!r}")
            value = float(value)
        elif self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"param {name!r} must be an integer, got {value!r}")
        elif not isinstance(value, self.kind):
            raise ValueError(
                f"param {name!r} must be {self.kind.__name__}, got {value!r}"
            )
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"param {name!r} must be >= {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"param {name!r} must be <= {self.maximum}, got {value}")
        if self.choices and value not in self.choices:
            raise ValueError(
                f"param {name!r} must be one of {list(self.choices)}, got {value!r}"
            )
        return value


@dataclass
class FaultContext:
    """What faults beyond the topology may need: workers, and submitters.

    `workers` maps a worker name to its process handle (see `chaos.workers`).
    `submitters` maps a name to a callable that submits one business event and
    returns what the system answered; the duplicate fault calls one twice.
    """

    workers: dict[str, Any] = field(default_factory=dict)
    submitters: dict[str, Callable[..., Any]] = field(default_factory=dict)


class Fault(abc.ABC):
    """One fault on one target: `start()` breaks it, `stop()` undoes it.

    `heal()` stops the fault if it is active and does nothing otherwise, so a
    teardown can call it whatever state a failed test left behind.
    """

    name: ClassVar[str]
    PARAMS: ClassVar[dict[str, Param]] = {}

    def __init__(
        self,
        topology: Topology,
        target: str,
        params: Mapping[str, Any] | None = None,
        context: FaultContext | None = None,
    ):
        known = KnownTargets.of(
            topology,
            context.workers if context else (),
            context.submitters if context else (),
        )
        problem = self.check_target(target, known)
        if problem:
            raise ConfigurationError(f"{self.name} cannot target {target!r}: {problem}")
        self.topology = topology
        self.target = target
        try:
            self.params = self.check_params(params or {})
        except ValueError as exc:
            raise ConfigurationError(f"{self.name} on {target}: {exc}") from exc
        self.context = context or FaultContext()
        self.active = False
        self.records: list[FaultRecord] = []

    def __repr__(self) -> str:
        state = "active" if self.active else "idle"
        return f"<{type(self).__name__} {self.name} on {self.target} ({state})>"

    # -- checks that need no topology -----------------------------------------

    @classmethod
    @abc.abstractmethod
    def check_target(cls, target: str, known: KnownTargets) -> str | None:
        """Why `target` cannot be hit by this fault, or None if it can."""

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters with defaults filled in; ValueError names a bad one."""
        if not isinstance(params, Mapping):
            raise ValueError(f"params must be an object, got {params!r}")
        unknown = sorted(set(params) - set(cls.PARAMS))
        if unknown:
            raise ValueError(
                f"unknown param(s) {unknown}; {cls.name} takes {sorted(cls.PARAMS)}"
            )
        checked = {}
        for name, spec in cls.PARAMS.items():
            if name in params:
                checked[name] = spec.check(name, params[name])
            elif spec.required:
                raise ValueError(f"param {name!r} is required")
            else:
                checked[name] = spec.default
        cls.check_combination(checked)
        return checked

    @classmethod
    def check_combination(cls, params: dict[str, Any]) -> None:
        """Raise ValueError when parameters are fine alone but not together."""
        return None

    # -- the pair ---------------------------------------------------------------

    def start(self) -> FaultRecord:
        if self.active:
            raise HarnessError(f"{self!r} is already started")
        record = self._record("start", **self._start())
        self.active = True
        logger.info(
            "fault %s on %s started: %s", self.name, self.target, record.to_json()
        )
        return record

    def stop(self) -> FaultRecord:
        if not self.active:
            raise HarnessError(f"{self!r} is not started")

        # Marked inactive first: a stop that fails half way is healed by the
        # topology, not retried here.
        self.active = False
        record = self._record("stop", **self._stop())
        logger.info(
            "fault %s on %s stopped: %s", self.name, self.target, record.to_json()
        )
        return record

    def heal(self) -> FaultRecord | None:
        return self.stop() if self.active else None

    @abc.abstractmethod
    def _start(self) -> dict[str, Any]:
        """Break the target; return `nodes`, `links` and `observed` for the record."""

    @abc.abstractmethod
    def _stop(self) -> dict[str, Any]:
        """Undo what `_start` did; return `nodes`, `links` and `observed`."""

    def _record(
        self,
        action: Literal["start", "stop"],
        nodes: tuple[str, ...] | list[str] = (),
        links: tuple[str, ...] | list[str] = (),
        observed: Mapping[str, Any] | None = None,
    ) -> FaultRecord:
        record = FaultRecord(
            fault=self.name,
            target=self.target,
            action=action,
            at=time.time(),
            nodes=tuple(nodes),
            links=tuple(links),
            params=dict(self.params),
            observed=dict(observed or {}),
        )
        self.records.append(record)
        return record

    # -- helpers for subclasses -------------------------------------------------

    def resolve_node(self, target: str | None = None) -> str:
        """The node a (possibly symbolic) target names right now."""
        target = target or self.target
        if target == MASTER:
            return self.topology.current_master()
        if target == REPLICA:
            master = self.topology.current_master()
            return next(n for n in REDIS_NODES if n != master)
        return target


def check_node(
    target: str, known: KnownTargets, kinds: tuple[str, ...] = ("redis", "sentinel")
) -> str | None:
    """Shared target check for faults on one Redis node or Sentinel."""
    allowed = {MASTER, REPLICA} if "redis" in kinds else set()
    if "redis" in kinds:
        allowed |= {n for n in known.nodes if n.startswith("redis-")}
    if "sentinel" in kinds:
        allowed |= {n for n in known.nodes if n.startswith("sentinel-")}
    if "postgres" in kinds and "postgres" in known.nodes:
        allowed.add("postgres")
    if target in allowed:
        return None
    return f"unknown target; expected one of {sorted(allowed)}"


def resolve_link(fault: Fault, link: str) -> str:
    """`master.peer` and `replica.client` name the current master's link."""
    node, _, role = link.partition(".")
    if node in (MASTER, REPLICA):
        return f"{fault.resolve_node(node)}.{role}"
    return link


def check_link(target: str, known: KnownTargets) -> str | None:
    node, _, role = target.partition(".")
    if node in (MASTER, REPLICA) and role in ("peer", "client"):
        return None
    if target in known.links:
        return None
    return (
        f"unknown link; expected a proxy name such as 'redis-1.peer' or "
        f"'master.client' (known: {', '.join(sorted(known.links)[:6])}, ...)"
    )


def wait_until(
    condition: Callable[[], bool], timeout: float, interval: float = 0.02
) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; say which."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
