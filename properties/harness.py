"""The session's harness: the system on a topology, its workers, the nemesis.

One `Harness` per test session holds an asyncio runner (every Redis client is
bound to the loop that made it, so all async work runs on one loop), the
`System` handle the state machines place orders through, the worker
processes, a `Nemesis` for faults, and the run's history. It also reads what
PostgreSQL holds (straight to the server, past any fault on the system's own
link) and waits, with bounds, for orders to settle.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from chaos.faults import Nemesis
from chaos.faults.base import Fault, FaultContext
from chaos.history import History
from chaos.topology import Topology
from chaos.workers import WorkerPool
from properties.model import FINAL_STATES, Effect, Model, Observation
from system import config
from system import replay as replay_module
from system import reset as reset_module
from system import status as status_module
from system.app import System

T = TypeVar("T")

SETTLED_JOB_STATES = frozenset({"completed", "failed", status_module.MISSING})

ROOT = Path(__file__).resolve().parents[1]
MUTANT_ENV = "BULLPROOF_MUTANT"
MUTANT_PACKAGE = "tests.mutants"

# Short enough that a paused worker's jobs are handed on within seconds.
LOCK_DURATION_MS = 2_000

_OBSERVE_SQL = (
    ("SELECT order_id, state FROM orders", None),
    (
        "SELECT order_id, line_no::text, kind,"
        " extract(epoch FROM created_at)::float8 FROM inventory_movements",
        "inventory",
    ),
    (
        "SELECT order_id, '', 'billing', extract(epoch FROM created_at)::float8"
        " FROM billing_entries",
        "billing",
    ),
    (
        "SELECT order_id, '', 'notification', extract(epoch FROM created_at)::float8"
        " FROM notifications",
        "notification",
    ),
)


CURRENT: Harness | None = None


def current() -> Harness:
    """The session's harness, which properties/conftest.py sets up."""
    if CURRENT is None:
        raise RuntimeError(
            "no bullproof harness is running; run the properties with pytest "
            "from the project root (properties/conftest.py provides it)"
        )
    return CURRENT


def mutant_name() -> str | None:
    name = os.environ.get(MUTANT_ENV, "").strip()
    return name or None


def mutant_module(name: str) -> Any:
    """Import (and so apply) the seeded bug `name` in this process."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module(f"{MUTANT_PACKAGE}.{name}")
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            f"{MUTANT_ENV}={name}: no module {MUTANT_PACKAGE}.{name}; "
            f"see tests/mutants/ for the catalogue"
        ) from exc


class Harness:
    """The reference system running on `topology`, ready for state machines."""

    def __init__(self, topology: Topology, history_path: Path):
        self.topology = topology
        self.runner = asyncio.Runner()
        self.mutant = mutant_name()
        preload: tuple[str, ...] = ()
        module = mutant_module(self.mutant) if self.mutant is not None else None

        self.system = System(topology.redis_settings(), topology.postgres_dsn)
        self.run(self.system.start())

        # A bug in the servers' configuration goes in once the schema exists.
        if module is not None:
            configure = getattr(module, "configure", None)
            if configure is not None:
                configure(topology)
            preload = (f"{MUTANT_PACKAGE}.{self.mutant}",)
        self.pool = WorkerPool(
            topology,
            {"inventory": 1, "billing": 2, "critical": 1, "general": 1, "batch": 1},
            lock_duration_ms=LOCK_DURATION_MS,
            preload=preload,
            env={"PYTHONPATH": str(ROOT)},
        )
        self.pool.start()
        self.dirty = True
        self.history = History(history_path)
        self.history_path = history_path
        self.nemesis = Nemesis(
            topology,
            history=self.history,
            context=FaultContext(workers={w.name: w for w in self.pool}),
        )

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def close(self) -> None:
        try:
            self.nemesis.heal_all()
        finally:
            try:
                self.pool.stop()
            finally:
                try:
                    self.run(self.system.close())
                finally:
                    self.runner.close()
                    self.history.close()

    # -- between examples ---------------------------------------------------------

    def heal(self) -> None:
        """Stop every fault, restart dead workers, wait for a healthy topology.

        Skipped when no fault ran since the last heal: the health check alone
        costs more than the reset that follows it."""
        if not self.dirty and all(w.is_running for w in self.pool):
            return
        self.nemesis.heal_all()
        self.pool.ensure_running()
        self.dirty = False

    def start_fault(self, fault: str, target: str, params: dict[str, Any]) -> Fault:
        self.dirty = True
        return self.nemesis.start(fault, target, params)

    def reset(self) -> float:
        """Empty the system's tables and queues; returns the seconds it took."""
        return self.run(reset_module.reset(self.system))

    def replay(self) -> list[str]:
        report = self.run(replay_module.replay(self.system))
        return list(report.replayed)

    # -- what PostgreSQL holds --------------------------------------------------

    def observe(self) -> Observation:
        effects = []
        states: dict[str, str] = {}
        with psycopg.connect(self.topology.postgres_admin_dsn, autocommit=True) as conn:
            for sql, kind in _OBSERVE_SQL:
                rows = conn.execute(sql).fetchall()
                if kind is None:
                    states = {order_id: state for order_id, state in rows}
                    continue
                for order_id, key, row_kind, at in rows:
                    name = "compensation" if row_kind == "compensate" else kind
                    effects.append(Effect(name, order_id, key, at))
        return Observation(states, tuple(effects), time.time())

    def jobs_per_step(self) -> dict[tuple[str, str], int]:
        """(order id, job name) -> how many jobs Redis holds for it, any state."""
        return self.run(_jobs_per_step(self.system))

    def pending_jobs_of_final_orders(self, obs: Observation) -> list[str]:
        """Jobs still waiting, active or delayed in Redis although their order
        is final in PostgreSQL: work that will never run, or run too late."""
        final = [o for o, state in obs.states.items() if state in FINAL_STATES]

        async def gather() -> list[str]:
            found = await asyncio.gather(
                *(status_module.order_status(self.system, o) for o in final)
            )
            return [
                f"order {st.order_id} is {st.state} but {job.name} is {job.state}"
                for st in found
                if st is not None and st.state in FINAL_STATES
                for job in st.jobs
                if job.state not in SETTLED_JOB_STATES
            ]

        return self.run(gather())

    def wait_final(
        self, model: Model, order_ids: set[str], bound_s: float
    ) -> tuple[Observation, list[str]]:
        """Wait until `order_ids` are final (as the model expects) or the bound
        passes; returns the last observation and, if the bound passed, where
        each stuck order is (its state and its jobs' states in Redis)."""
        from properties.checkers import find_not_final

        deadline = time.monotonic() + bound_s
        subset = Model(accepted={o: model.accepted[o] for o in order_ids})
        while True:
            obs = self.observe()
            if not find_not_final(subset, obs):
                return obs, []
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)

        stuck = []
        for reason in find_not_final(subset, obs):
            order_id = reason.split(":")[0].removeprefix("order ")
            where = self.run(status_module.order_status(self.system, order_id))
            stuck.append(where.describe() if where is not None else reason)
        return obs, stuck


async def _jobs_per_step(system: System) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    redis = system.redis
    for queue in config.QUEUES.values():
        prefix = f"{config.QUEUE_PREFIX}:{queue}:"
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            job_id = key[len(prefix) :]
            if ":" in job_id or job_id in ("id", "meta", "events", "marker"):
                continue
            if await redis.type(key) != "hash":
                continue
            raw, name = await redis.hmget(key, ["data", "name"])
            if raw is None:
                continue
            order_id = json.loads(raw).get("order_id")
            if order_id is not None:
                counts[(order_id, name)] = counts.get((order_id, name), 0) + 1
    return counts
