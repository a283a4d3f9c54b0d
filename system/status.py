"""Where an order is: its state in PostgreSQL and its jobs' states in Redis.

For "stuck order" reports: an order that is still `accepted` or `processing`
long after it was placed, with each of its jobs shown as waiting, active,
delayed, waiting-children, completed, failed, or missing (not in Redis at all,
which replay repairs).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from system import config, ids, jobs
from system.app import System

logger = logging.getLogger(__name__)

MISSING = "missing"
LOOKUP_CONCURRENCY = 20


@dataclass(frozen=True)
class JobStatus:
    name: str
    queue: str
    job_id: str
    state: str


@dataclass(frozen=True)
class OrderStatus:
    order_id: str
    state: str
    workflow: str
    age_s: float
    priority: str = "general"
    trace_id: str = ""
    failure_reason: str | None = None
    jobs: tuple[JobStatus, ...] = field(default_factory=tuple)

    def job(self, name: str) -> JobStatus:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(f"order {self.order_id} has no job named {name!r}")

    def describe(self) -> str:
        where = ", ".join(f"{j.name} {j.state}" for j in self.jobs)
        return f"order {self.order_id}: {self.state} ({self.age_s:.1f} s old); {where}"


def order_jobs(ref: jobs.OrderRef) -> list[tuple[str, str, str]]:
    """(job name, queue, job id) of every job an order can have."""
    if ref.workflow == "saga":
        steps = (jobs.saga_step(ref, step) for step in jobs.SAGA_STEPS)
        return [(name, queue, job_id) for queue, name, job_id in steps]
    job = ids.job_ids(ref.order_id)
    return [
        ("notify-user", ref.notification_queue, job.notify),
        ("update-inventory", config.QUEUES["inventory"], job.inventory),
        ("record-billing", config.QUEUES["billing"], job.billing),
    ]


async def job_state(system: System, queue: str, job_id: str) -> str:
    state = await system.producer.queue(queue).getJobState(job_id)
    return MISSING if state in (None, "unknown") else str(state)


async def _status(system: System, row: tuple[Any, ...]) -> OrderStatus:
    order_id, state, workflow, priority, trace, reason, age = row
    ref = jobs.OrderRef(order_id, trace, priority, workflow)
    found = []
    for name, queue, job_id in order_jobs(ref):
        job = await job_state(system, queue, job_id)
        found.append(JobStatus(name, queue, job_id, job))
    return OrderStatus(
        order_id, state, workflow, age, priority, trace, reason, tuple(found)
    )


_COLUMNS = (
    "SELECT order_id, state, workflow, priority, trace_id, failure_reason,"
    " extract(epoch FROM clock_timestamp() - created_at)::float8 FROM orders"
)


async def order_status(system: System, order_id: str) -> OrderStatus | None:
    async with system.db.connection() as conn:
        cur = await conn.execute(_COLUMNS + " WHERE order_id = %s", (order_id,))
        row = await cur.fetchone()
    return None if row is None else await _status(system, row)


async def unfinished_orders(
    system: System, older_than_s: float = 0.0, limit: int = 10_000
) -> list[OrderStatus]:
    """Orders still accepted or processing after `older_than_s` seconds."""
    async with system.db.connection() as conn:
        cur = await conn.execute(
            _COLUMNS + " WHERE state IN ('accepted', 'processing')"
            " AND created_at <= clock_timestamp() - make_interval(secs => %s)"
            " ORDER BY created_at LIMIT %s",
            (older_than_s, limit),
        )
        rows = await cur.fetchall()

    # Each lookup takes a pooled connection; after a large failover there are
    # more unfinished orders than the pool has connections.
    slots = asyncio.Semaphore(LOOKUP_CONCURRENCY)

    async def one(row: tuple[Any, ...]) -> OrderStatus:
        async with slots:
            return await _status(system, row)

    return list(await asyncio.gather(*(one(row) for row in rows)))


async def main() -> int:
    async with System.from_env() as system:
        stuck = await unfinished_orders(system, older_than_s=30.0)
    for status in stuck:
        print(status.describe())
    print(f"{len(stuck)} unfinished orders older than 30 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
