"""Reproduces the failure modes bullproof exists to catch, and counts them.

Each scenario runs the reference system on a fresh local topology, breaks it
with the faults of `chaos.faults`, and counts what broke. One figure per line,
`name value unit`:

  findings.split_brain.acked                  orders acknowledged during the run
  findings.split_brain.acked_lost             of those, gone from Redis after
                                              the old master was cut from its
                                              peers for 7 s and rejoined
  findings.split_brain.lost_after_replay      of those, still not finished after
                                              replay and processing (must be 0)
  findings.split_brain_min_replicas.*         the same with min-replicas-to-write
                                              1 and min-replicas-max-lag 2; here
                                              `refused` counts failed placements
  findings.crash_failover.second_deliveries   jobs delivered more than once
                                              around a master SIGKILL
  findings.lock_expiry.second_deliveries      jobs delivered more than once when
                                              a worker froze past its lock
  findings.duplicate_effects                  effects applied twice across all
                                              scenarios, duplicate submissions
                                              included (must be 0)

Every loop is bounded in count and time. Each scenario leaves its history
(orders placed, faults started and stopped) in `--history-dir`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from chaos.faults import FaultContext, Nemesis
from chaos.history import History
from chaos.topology import Topology, TopologyOptions, create
from chaos.workers import WorkerPool, spawn_worker
from system import config, ids
from system.app import System
from system.errors import OrderRejected
from system.orders import place_order
from system.replay import ReplayReport, replay, replay_order
from system.status import order_status

logger = logging.getLogger(__name__)

SKUS = ("SKU-APPLE", "SKU-BREAD", "SKU-CHEESE", "SKU-DATES")


def order(order_id: str, n: int) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": f"c-{n % 50}",
        "lines": [{"sku": SKUS[n % len(SKUS)], "quantity": 1 + n % 3}],
    }


@dataclass
class Load:
    """Places orders from a thread of its own until stopped or `limit` is hit.

    An order counts as acknowledged when `place_order` returned: the row is
    in PostgreSQL and Redis answered OK to its flow.
    """

    topology: Topology
    prefix: str
    history: History
    tasks: int = 4
    limit: int = 4000
    pause_s: float = 0.01
    acked: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._run()), name=f"load-{self.prefix}"
        )
        self._thread.start()

    def stop(self, timeout: float = 45.0) -> None:
        """Stop placing orders; placements in flight finish (bounded by retries)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"load {self.prefix} did not stop in {timeout} s")

    async def _run(self) -> None:
        settings = self.topology.redis_settings()
        async with System(settings, self.topology.postgres_dsn) as system:
            await asyncio.gather(*(self._task(system, t) for t in range(self.tasks)))

    async def _task(self, system: System, task: int) -> None:
        per_task = self.limit // self.tasks
        for n in range(per_task):
            if self._stop.is_set():
                return
            order_id = f"{self.prefix}-{task}-{n}"
            try:
                with self.history.operation(f"load-{task}", "place_order", order_id):
                    await place_order(system, order(order_id, n))
            except OrderRejected:
                raise
            except Exception:
                # Not acknowledged; replay still finds it if its row exists.
                self.refused.append(order_id)
            else:
                self.acked.append(order_id)
            await asyncio.sleep(self.pause_s)


def prepare(topology: Topology) -> None:
    """Create the schema before any worker or load runs."""

    async def go() -> None:
        async with System(topology.redis_settings(), topology.postgres_dsn):
            pass

    asyncio.run(go())


def missing_flows(topology: Topology, order_ids: list[str]) -> list[str]:
    """Orders whose flow (its parent job) Redis no longer has."""
    queue = config.QUEUES["general"]
    keys = [f"{config.QUEUE_PREFIX}:{queue}:{ids.job_ids(o).notify}" for o in order_ids]
    with topology.admin(topology.current_master(), timeout=10) as client:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        found = pipe.execute()
    return [o for o, exists in zip(order_ids, found, strict=True) if not exists]


def unfinished(topology: Topology, order_ids: list[str]) -> list[str]:
    with psycopg.connect(topology.postgres_admin_dsn) as conn:
        rows = conn.execute(
            "SELECT order_id FROM orders WHERE order_id = ANY(%s)"
            " AND state IN ('completed', 'failed')",
            (order_ids,),
        ).fetchall()
    done = {r[0] for r in rows}
    return [o for o in order_ids if o not in done]


def wait_finished(
    topology: Topology, order_ids: list[str], timeout: float
) -> list[str]:
    """Wait until every order is completed or failed; return those that are not."""
    deadline = time.monotonic() + timeout
    while True:
        left = unfinished(topology, order_ids)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def run_replay(topology: Topology) -> bool:
    """Run the system's replay; True if it failed and a bounded one stood in.

    `system.replay.replay` looks up every unfinished order's jobs at once; with
    more unfinished orders than the Redis client's pool has connections (100)
    it fails. The stand-in replays the same orders through the same per-order
    function, twenty at a time.
    """

    async def go() -> bool:
        async with System(topology.redis_settings(), topology.postgres_dsn) as system:
            try:
                report = await replay(system)
            except Exception as exc:
                logger.warning("replay failed (%r); replaying 20 at a time", exc)
            else:
                logger.info("%s", report)
                return False

        # A new System: the failed replay's other lookups may still hold
        # the old one's connections.
        async with System(topology.redis_settings(), topology.postgres_dsn) as system:
            await bounded_replay(system)
        return True

    return asyncio.run(go())


async def bounded_replay(system: System, concurrency: int = 20) -> ReplayReport:
    async with system.db.connection() as conn:
        cur = await conn.execute(
            "SELECT order_id FROM orders WHERE state IN ('accepted', 'processing')"
            " ORDER BY created_at"
        )
        pending = [row[0] for row in await cur.fetchall()]
    report = ReplayReport(examined=len(pending))
    slots = asyncio.Semaphore(concurrency)

    async def one(order_id: str) -> None:
        async with slots:
            status = await order_status(system, order_id)
            if status is not None:
                await replay_order(system, status, report)

    await asyncio.gather(*(one(o) for o in pending))
    logger.info("bounded %s", report)
    return report


def deliveries(topology: Topology) -> int:
    with psycopg.connect(topology.postgres_admin_dsn) as conn:
        [(count,)] = conn.execute("SELECT count(*) FROM deliveries").fetchall()
    return int(count)


def settle(topology: Topology, quiet_s: float, timeout: float) -> None:
    """Wait until no job has been delivered for `quiet_s` (at most `timeout`)."""
    deadline = time.monotonic() + timeout
    last, quiet_since = deliveries(topology), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = deliveries(topology)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return


def second_deliveries(topology: Topology) -> int:
    """Jobs that a processor was handed more than once."""
    with psycopg.connect(topology.postgres_admin_dsn) as conn:
        [(count,)] = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM deliveries"
            " GROUP BY queue, job_id HAVING count(*) > 1) twice"
        ).fetchall()
    return int(count)


DUPLICATE_EFFECTS_SQL = """
SELECT
  (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM billing_entries
     GROUP BY order_id HAVING count(*) > 1) b)
+ (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM notifications
     GROUP BY order_id HAVING count(*) > 1) m)
+ (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n
     FROM inventory_movements GROUP BY order_id, line_no, kind
     HAVING count(*) > 1) i)
"""


def duplicate_effects(topology: Topology) -> int:
    """Effects that happened more than once: billing, notification, inventory."""
    with psycopg.connect(topology.postgres_admin_dsn) as conn:
        [(count,)] = conn.execute(DUPLICATE_EFFECTS_SQL).fetchall()
    return int(count)


def submit_duplicates(nemesis: Nemesis, count: int) -> None:
    for _ in range(count):
        fault = nemesis.start("duplicate", "place_order", {"copies": 2})
        nemesis.stop(fault)


@contextlib.contextmanager
def scenario(
    name: str, history_dir: Path, options: TopologyOptions | None = None
) -> Iterator[tuple[Topology, History]]:
    topology = create("local", options)
    with topology, History(history_dir / f"{name}.jsonl") as history:
        prepare(topology)
        yield topology, history


Figures = dict[str, float]


def split_brain(history_dir: Path, *, min_replicas: bool, cut_s: float) -> Figures:
    name = "split_brain_min_replicas" if min_replicas else "split_brain"
    options = (
        TopologyOptions(min_replicas_to_write=1, min_replicas_max_lag=2)
        if min_replicas
        else None
    )
    with scenario(name, history_dir, options) as (topology, history):
        load = Load(topology, name, history)
        nemesis = Nemesis(topology, history=history)
        try:
            load.start()
            time.sleep(1.0)

            # The old master keeps taking the producer's writes while the
            # Sentinels promote a replica; on rejoin it throws them away.
            fault = nemesis.start("split_brain", "master")
            time.sleep(cut_s)
            nemesis.stop(fault)
            nemesis.heal_all()
            time.sleep(1.0)
        finally:
            load.stop()
            nemesis.heal_all()
        lost = missing_flows(topology, load.acked)

        fallback = run_replay(topology)
        with WorkerPool(topology, concurrency=20):
            submit_duplicates(nemesis, 10)
            left = wait_finished(topology, load.acked, timeout=180)
        figures = {
            f"findings.{name}.acked": len(load.acked),
            f"findings.{name}.refused": len(load.refused),
            f"findings.{name}.acked_lost": len(lost),
            f"findings.{name}.lost_after_replay": len(left),
            f"findings.{name}.replay_failed": int(fallback),
            "duplicate_effects": duplicate_effects(topology),
        }
    return figures


CRASH_VARIANTS = {
    # SIGKILL of the master; the Sentinels promote a replica.
    "crash_failover": "kill",
    # The same with replication starved to 8 KB/s, so the master's replica
    # buffer holds seconds of writes that die with it. (Latency alone does
    # not do it: Toxiproxy still delivers what it holds after the master dies.)
    "crash_failover_lagging": "kill",
    # A power loss: the master loses its last second of AOF and comes back,
    # still master, before the Sentinels notice.
    "crash_power_loss": "crash",
}


def crash_failover(history_dir: Path, variant: str = "crash_failover") -> Figures:
    with scenario(variant, history_dir) as (topology, history):
        load = Load(topology, variant, history, limit=2000, pause_s=0.02)
        nemesis = Nemesis(topology, history=history)
        pool = WorkerPool(
            topology, env={config.ENV_WORK_MS: "200"}, lock_duration_ms=3000
        )
        with pool:
            try:
                load.start()
                time.sleep(2.0)
                if variant == "crash_failover_lagging":
                    nemesis.start("bandwidth", "master.peer", {"rate": 8})
                    time.sleep(2.0)

                # Jobs the master moved or finished in its last moments come
                # back as they were before, and are handed out again.
                fault = nemesis.start(CRASH_VARIANTS[variant], "master")
                time.sleep(3.0)
                nemesis.heal_all()
                time.sleep(1.0)
            finally:
                load.stop()
                nemesis.heal_all()

            # Counted before replay: a replayed order whose completed jobs
            # were already removed (removeOnComplete) runs them again, which
            # is replay's doing, not the crash's.
            # Quiet for longer than a lock (3 s) plus a stalled check (3 s):
            # a stalled job would have been handed out again by then.
            settle(topology, quiet_s=7.0, timeout=60.0)
            crash_twice = second_deliveries(topology)
            fallback = run_replay(topology)
            left = wait_finished(topology, load.acked, timeout=180)
        figures = {
            f"findings.{variant}.acked": len(load.acked),
            f"findings.{variant}.unfinished": len(left),
            f"findings.{variant}.replay_failed": int(fallback),
            f"findings.{variant}.second_deliveries": crash_twice,
            f"findings.{variant}.second_deliveries_with_replay": second_deliveries(
                topology
            ),
            "duplicate_effects": duplicate_effects(topology),
        }
        if variant == "crash_power_loss":
            seen = fault.records[0].observed
            figures[f"findings.{variant}.aof_bytes_cut"] = seen["aof_bytes_cut"]
    return figures


def lock_expiry(history_dir: Path) -> Figures:
    with scenario("lock_expiry", history_dir) as (topology, history):
        env = {config.ENV_WORK_MS: "1500"}
        slow = [
            spawn_worker(
                topology,
                "inventory",
                name=f"inventory-{x}",
                concurrency=4,
                lock_duration_ms=2000,
                env=env,
            )
            for x in ("a", "b")
        ]
        pool = WorkerPool(
            topology, {"billing": 1, "general": 1, "critical": 1}, concurrency=10
        )
        context = FaultContext(workers={w.name: w for w in slow})
        nemesis = Nemesis(topology, history=history, context=context)
        load = Load(topology, "lock", history, tasks=2, limit=40, pause_s=0.05)
        try:
            with pool:
                load.start()

                # Frozen past its 2 s lock and the 3 s stalled check, worker a
                # loses its jobs to worker b, then wakes and finishes them too.
                fault = nemesis.start("pause_worker", slow[0].name)
                time.sleep(8.0)
                nemesis.stop(fault)
                load.stop()
                left = wait_finished(topology, load.acked, timeout=120)
        finally:
            with contextlib.suppress(Exception):
                nemesis.heal_all()
            for worker in slow:
                worker.stop(grace=2.0)
        figures = {
            "findings.lock_expiry.acked": len(load.acked),
            "findings.lock_expiry.unfinished": len(left),
            "findings.lock_expiry.held_when_paused": len(
                fault.records[0].observed["held_jobs"]
            ),
            "findings.lock_expiry.second_deliveries": second_deliveries(topology),
            "duplicate_effects": duplicate_effects(topology),
        }
    return figures


UNITS = {
    "acked": "orders",
    "refused": "orders",
    "acked_lost": "orders",
    "lost_after_replay": "orders",
    "unfinished": "orders",
    "replay_failed": "runs",
    "held_when_paused": "jobs",
    "aof_bytes_cut": "bytes",
    "second_deliveries": "jobs",
    "second_deliveries_with_replay": "jobs",
    "duplicate_effects": "effects",
}


def emit(name: str, value: float) -> None:
    unit = UNITS.get(name.rsplit(".", 1)[-1], "")
    print(f"{name} {value:g} {unit}".rstrip(), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.findings", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--only",
        choices=(
            "split_brain",
            "min_replicas",
            *CRASH_VARIANTS,
            "lock_expiry",
        ),
        action="append",
        help="run only these scenarios (repeatable; default: all)",
    )
    parser.add_argument("--cut-s", type=float, default=7.0)
    parser.add_argument("--history-dir", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    history_dir = args.history_dir or Path(tempfile.mkdtemp(prefix="findings-"))
    history_dir.mkdir(parents=True, exist_ok=True)

    scenarios: dict[str, Callable[[], Figures]] = {
        "split_brain": lambda: split_brain(
            history_dir, min_replicas=False, cut_s=args.cut_s
        ),
        "min_replicas": lambda: split_brain(
            history_dir, min_replicas=True, cut_s=args.cut_s
        ),
        **{
            variant: functools.partial(crash_failover, history_dir, variant)
            for variant in CRASH_VARIANTS
        },
        "lock_expiry": lambda: lock_expiry(history_dir),
    }
    duplicates = 0
    for key, run in scenarios.items():
        if args.only and key not in args.only:
            continue
        t0 = time.monotonic()
        figures = run()
        duplicates += int(figures.pop("duplicate_effects"))
        for name, value in figures.items():
            emit(name, value)
        logger.info("scenario %s took %.1f s", key, time.monotonic() - t0)
    emit("findings.duplicate_effects", duplicates)
    print(f"histories in {history_dir}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
