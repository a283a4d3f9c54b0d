"""How fast the reference pipeline runs compared with bullmq on its own.

Prints one figure per line as `name value unit`:
  pipeline.raw_jobs_per_s  one in-process bullmq worker (concurrency 50) with
                           an empty processor, draining prefilled jobs
  pipeline.orders_per_s    orders end to end: placed (validated, stored in
                           PostgreSQL, flow added) until every order is
                           completed, one worker process per queue
  pipeline.ratio           jobs per second inside the pipeline (three per
                           order) divided by the raw figure
  pipeline.cpu_ms.*        CPU milliseconds per raw job and per order, per
                           process group (this process, workers, Redis,
                           PostgreSQL, Toxiproxy): where the time goes,
                           however busy the machine is
Starts its own local topology and stops it at the end. `--profile` also runs
the pipeline with every worker under cProfile and prints where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import cProfile
import logging
import os
import pstats
import time
from pathlib import Path
from typing import Any

from bullmq import Job, Queue, Worker

from chaos.topology import Topology, create
from chaos.workers import WorkerPool
from system import redis_client, reset
from system.app import System
from system.orders import place_order

RAW_QUEUE = "{app-main}:bench-raw"
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
PROFILE_ENV = "BULLPROOF_PROFILE_DIR"


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of `pid` (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After the command: state is field 0, utime 11, stime 12.
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds spent by groups of processes between `start` and `stop`."""

    def __init__(self, topology: Topology, workers: WorkerPool | None = None):
        self.groups: dict[str, list[int]] = {"bench": [os.getpid()]}
        for node, pid in topology.processes():
            group = node.split("-")[0]
            pids = [pid] + (_children(pid) if group == "postgres" else [])
            self.groups.setdefault(group, []).extend(pids)
        if workers is not None:
            self.groups["workers"] = [w.pid for w in workers if w.pid is not None]
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {g: sum(_cpu_s(p) for p in pids) for g, pids in self.groups.items()}

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        now = self._now()
        return {g: now[g] - self._start.get(g, 0.0) for g in now}


async def raw_jobs_per_s(topology: Topology, jobs: int, concurrency: int) -> float:
    settings = topology.redis_settings()
    queue = Queue(RAW_QUEUE, {"connection": redis_client.master_client(settings)})
    try:
        await queue.obliterate(force=True)
        for start in range(0, jobs, 500):
            await queue.addBulk(
                [
                    {
                        "name": "noop",
                        "data": {"n": n},
                        "opts": {"removeOnComplete": 1000},
                    }
                    for n in range(start, min(start + 500, jobs))
                ]
            )
        done = asyncio.Event()
        seen = 0

        async def empty(job: Job, token: str) -> None:
            nonlocal seen
            seen += 1
            if seen >= jobs:
                done.set()

        started = time.perf_counter()
        worker = Worker(
            RAW_QUEUE,
            empty,
            {
                "connection": redis_client.master_client(settings),
                "concurrency": concurrency,
                "runRetryDelay": 300,
            },
        )
        await asyncio.wait_for(done.wait(), timeout=300)
        elapsed = time.perf_counter() - started
        await worker.close()
        await queue.obliterate(force=True)
        return jobs / elapsed
    finally:
        await queue.close()


def _order(n: int) -> dict[str, Any]:
    return {
        "order_id": f"bench-{n}",
        "customer_id": "bench",
        "lines": [
            {"sku": "SKU-APPLE", "quantity": 1},
            {"sku": "SKU-BREAD", "quantity": 2},
        ],
    }


async def orders_per_s(topology: Topology, orders: int, in_flight: int) -> float:
    async with System(topology.redis_settings(), topology.postgres_dsn) as system:
        await reset.reset(system)
        slots = asyncio.Semaphore(in_flight)

        async def submit(n: int) -> None:
            async with slots:
                await place_order(system, _order(n))

        started = time.perf_counter()
        await asyncio.gather(*(submit(n) for n in range(orders)))
        while True:
            async with system.db.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM orders WHERE state = 'completed'"
                )
                row = await cur.fetchone()
            if row is not None and row[0] >= orders:
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        await reset.reset(system)
        return orders / elapsed


def _pool(topology: Topology, concurrency: int, profile_dir: Path | None) -> WorkerPool:
    env = {}
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        env["BULLPROOF_PRELOAD"] = "bench.pipeline"
        env[PROFILE_ENV] = str(profile_dir)
    return WorkerPool(
        topology,
        {"inventory": 1, "billing": 1, "general": 1},
        concurrency=concurrency,
        env=env,
    )


def _profile_this_process(directory: str) -> None:
    """Profile a worker that preloaded this module, written out at its exit."""
    profiler = cProfile.Profile()
    profiler.enable()

    def dump() -> None:
        profiler.disable()
        profiler.dump_stats(f"{directory}/worker-{os.getpid()}.prof")

    atexit.register(dump)


def _print_profiles(directory: Path, top: int = 25) -> None:
    for path in sorted(directory.glob("worker-*.prof")):
        print(f"--- {path.name}")
        stats = pstats.Stats(str(path))
        stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-jobs", type=int, default=5000)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--profile", type=Path, help="write worker profiles here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with create("local") as topology:
        meter = CpuMeter(topology)
        meter.start()
        raw = asyncio.run(raw_jobs_per_s(topology, args.raw_jobs, args.concurrency))
        raw_cpu = meter.stop()
        with _pool(topology, args.concurrency, args.profile) as pool:
            # A short warm-up, so connection set-up is not part of the figure.
            asyncio.run(orders_per_s(topology, 50, args.in_flight))
            meter = CpuMeter(topology, pool)
            meter.start()
            pipeline = asyncio.run(orders_per_s(topology, args.orders, args.in_flight))
            pipeline_cpu = meter.stop()

    print(f"pipeline.raw_jobs_per_s {raw:.0f} jobs/s")
    print(f"pipeline.orders_per_s {pipeline:.1f} orders/s")
    print(f"pipeline.ratio {3 * pipeline / raw:.2f} ratio")
    for group, spent in sorted(raw_cpu.items()):
        print(f"pipeline.cpu_ms.raw_job.{group} {1000 * spent / args.raw_jobs:.3f} ms")
    for group, spent in sorted(pipeline_cpu.items()):
        print(f"pipeline.cpu_ms.order.{group} {1000 * spent / args.orders:.3f} ms")
    if args.profile is not None:
        _print_profiles(args.profile)


if os.environ.get(PROFILE_ENV) and __name__ != "__main__":
    _profile_this_process(os.environ[PROFILE_ENV])

if __name__ == "__main__":
    main()
