"""Replay: re-add the jobs of every order PostgreSQL says is unfinished.

PostgreSQL holds every accepted order before any job exists, so whatever Redis
lost (a flushed dataset, the last second of writes before a crash, the writes
an old master discarded after a split brain) can be rebuilt from it. Replay
re-adds each unfinished order's flow with the same job ids: a job Redis still
has is not duplicated, a lost one is created again. A job whose completed
record was already removed runs again; the effects' guards make that
harmless.

An order whose flow already failed in Redis (a child failed for good and took
the parent with it) is settled as failed instead of replayed. A saga order is
resumed at the step its effects say comes next.

`replay_flow` is a seam: swapping it for a version with fresh ids shows what
re-adding with new ids would do.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from system import effects, jobs
from system.app import System
from system.status import OrderStatus, unfinished_orders

logger = logging.getLogger(__name__)

REPLAY_CONCURRENCY = 20


@dataclass
class ReplayReport:
    examined: int = 0
    replayed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"replay examined {self.examined} unfinished orders: "
            f"{len(self.replayed)} re-added, {len(self.failed)} settled as failed"
        )


async def replay_flow(producer: jobs.Producer, ref: jobs.OrderRef) -> None:
    """Re-add an order's flow with the ids `place_order` used."""
    await jobs.enqueue_order(producer, ref, "replay")


async def _saga_next_step(system: System, status: OrderStatus) -> str:
    if status.job("saga-billing").state == "failed":
        return "compensate"
    async with system.db.connection() as conn:
        cur = await conn.execute(
            "SELECT"
            " EXISTS (SELECT 1 FROM billing_entries WHERE order_id = %s),"
            " EXISTS (SELECT 1 FROM inventory_movements"
            "         WHERE order_id = %s AND kind = 'reserve')",
            (status.order_id, status.order_id),
        )
        row = await cur.fetchone()
    assert row is not None
    billed, reserved = row
    if billed:
        return "notify"
    if reserved:
        return "billing"
    return "inventory"


async def _failed_reason(system: System, status: OrderStatus) -> str | None:
    for job in status.jobs:
        if job.state == "failed" and job.name != "saga-billing":
            raw: Any = await system.producer.queue(job.queue).client.hget(
                system.producer.queue(job.queue).toKey(job.job_id), "failedReason"
            )
            return f"{job.name} failed: {raw or 'unknown reason'}"
    return None


async def replay_order(
    system: System, status: OrderStatus, report: ReplayReport
) -> None:
    ref = jobs.OrderRef(
        status.order_id, status.trace_id, status.priority, status.workflow
    )
    reason = await _failed_reason(system, status)
    if reason is not None:
        async with system.db.connection() as conn:
            if await effects.mark_order_failed(conn, status.order_id, reason):
                report.failed.append(status.order_id)
                logger.info(
                    "replay: order %s settled as failed (%s)", ref.order_id, reason
                )
        return
    if status.workflow == "saga":
        step = await _saga_next_step(system, status)
        await jobs.enqueue_saga_step(system.producer, ref, step, "replay")
    else:
        await replay_flow(system.producer, ref)
    report.replayed.append(status.order_id)


async def replay(system: System, *, older_than_s: float = 0.0) -> ReplayReport:
    """Re-add the jobs of every unfinished order placed `older_than_s` ago."""
    report = ReplayReport()
    pending = await unfinished_orders(system, older_than_s=older_than_s)
    report.examined = len(pending)
    slots = asyncio.Semaphore(REPLAY_CONCURRENCY)

    async def one(status: OrderStatus) -> None:
        async with slots:
            await replay_order(system, status, report)

    await asyncio.gather(*(one(status) for status in pending))
    logger.info("%s", report)
    return report


async def _main(args: argparse.Namespace) -> int:
    async with System.from_env() as system:
        report = await replay(system, older_than_s=args.older_than)
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m system.replay",
        description="Re-add the jobs of unfinished orders, with the same ids.",
    )
    parser.add_argument(
        "--older-than",
        type=float,
        default=0.0,
        help="only orders placed at least this many seconds ago",
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
