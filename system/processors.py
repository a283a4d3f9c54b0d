"""What workers do with each job: record the delivery, then run its effect.

Every invocation first writes a `deliveries` row on its own (outside the
effect's transaction), so duplicate deliveries can be counted even when the
effect itself was skipped. The effect then runs in one guarded transaction
(see `system.effects`); a redelivered job finds its effect already there and
logs one WARNING line.

A job that cannot reach PostgreSQL is put back (delayed) without using up an
attempt: attempts are for failures of the work, and an order should not fail
for good because the database was away for a few seconds.

When a job fails for good, `on_final_failure` settles its order: flow jobs
and saga steps fail the order, and a saga's billing failure enqueues the
compensation that puts the stock back.

Seams: `simulate_work` (how long and how the work takes: replace it with a
blocking sleep to model work that outlives its lock), the effect functions in
`system.effects`, and `jobs.enqueue_saga_step`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from bullmq import Job
from bullmq.custom_errors import DelayedError, UnrecoverableError
from redis.asyncio import Redis

from system import config, effects, jobs, throttle
from system.db import Database
from system.errors import InsufficientStock

logger = logging.getLogger(__name__)

# Errors that mean the database could not be reached, not that the work
# failed; such a job is postponed without using up an attempt.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    TimeoutError,
)
DATABASE_RETRY_DELAY_MS = 1000

# Extra time every order job takes, as a slow downstream call would.
WORK_DELAY_S = float(os.environ.get(config.ENV_WORK_MS, "0") or 0) / 1000


async def simulate_work(job: Job) -> None:
    if WORK_DELAY_S > 0:
        await asyncio.sleep(WORK_DELAY_S)


Handler = Callable[[Job, int], Awaitable[dict[str, Any]]]


def _order_ref(job: Job) -> jobs.OrderRef:
    data = job.data or {}
    order_id = data.get("order_id")
    if not isinstance(order_id, str):
        raise UnrecoverableError(f"job {job.id} has no order_id in {data!r:.200}")
    metadata = data.get("metadata") or {}
    default_workflow = "saga" if job.name.startswith("saga-") else "flow"
    return jobs.OrderRef(
        order_id,
        str(metadata.get("trace_id", "")),
        str(metadata.get("priority", "general")),
        str(metadata.get("workflow", default_workflow)),
    )


class Processors:
    """The processor a worker runs, for every job name the system uses."""

    def __init__(
        self, db: Database, producer: jobs.Producer, redis: Redis, worker: str
    ):
        self.db = db
        self.producer = producer
        self.redis = redis
        self.worker = worker
        self.pid = os.getpid()
        self._tasks: set[asyncio.Task[None]] = set()
        self.handlers: dict[str, Handler] = {
            "update-inventory": self._inventory,
            "record-billing": self._billing,
            "notify-user": self._notify,
            "saga-inventory": self._saga_inventory,
            "saga-billing": self._saga_billing,
            "saga-compensate": self._saga_compensate,
            "saga-notify": self._notify,
            "record-updated": self._record_updated,
            "batch-report": self._batch_report,
        }

    async def process(self, job: Job, token: str) -> dict[str, Any]:
        handler = self.handlers.get(job.name)
        if handler is None:
            raise UnrecoverableError(f"no processor for job name {job.name!r}")
        attempt = job.attemptsMade + 1
        try:
            async with self.db.connection() as conn:
                await effects.record_delivery(
                    conn,
                    queue=job.queue.name,
                    job_id=str(job.id),
                    job_name=job.name,
                    attempt=attempt,
                    worker=self.worker,
                    pid=self.pid,
                )
            return await handler(job, attempt)
        except DATABASE_UNAVAILABLE as exc:
            await self._postpone(job, token, exc)
            raise DelayedError(f"PostgreSQL unavailable: {exc}") from exc

    async def _postpone(self, job: Job, token: str, exc: BaseException) -> None:
        """Put the job back for later without using up one of its attempts.

        Attempts are for failures of the work itself; a database that is
        away for a few seconds should not fail an order for good.
        """
        logger.warning(
            "job %s postponed %d ms: PostgreSQL unavailable (%s)",
            job.id,
            DATABASE_RETRY_DELAY_MS,
            str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
        )
        await job.moveToDelayed(
            int(time.time() * 1000) + DATABASE_RETRY_DELAY_MS, token
        )

    def _report(self, job: Job, order_id: str, outcome: effects.Outcome) -> None:
        if outcome == effects.DUPLICATE:
            logger.warning(
                "duplicate delivery of %s %s skipped: order %s already has it",
                job.name,
                job.id,
                order_id,
            )
        elif outcome == effects.MISSING:
            logger.warning(
                "job %s names order %s, which does not exist", job.id, order_id
            )
        elif outcome == effects.SKIPPED:
            logger.info("job %s skipped: order %s already failed", job.id, order_id)

    async def _effect(
        self,
        job: Job,
        run: Callable[[Any], Awaitable[effects.Outcome]],
    ) -> dict[str, Any]:
        ref = _order_ref(job)
        await simulate_work(job)
        try:
            async with self.db.connection() as conn:
                outcome = await run(conn)
        except InsufficientStock as exc:
            raise UnrecoverableError(str(exc)) from exc
        self._report(job, ref.order_id, outcome)
        return {"order_id": ref.order_id, "outcome": outcome}

    async def _inventory(self, job: Job, attempt: int) -> dict[str, Any]:
        ref = _order_ref(job)
        return await self._effect(
            job, lambda c: effects.reserve_inventory(c, ref.order_id, str(job.id))
        )

    async def _billing(self, job: Job, attempt: int) -> dict[str, Any]:
        ref = _order_ref(job)
        return await self._effect(
            job,
            lambda c: effects.record_billing(c, ref.order_id, str(job.id), attempt),
        )

    async def _notify(self, job: Job, attempt: int) -> dict[str, Any]:
        ref = _order_ref(job)
        channel = config.short_queue_name(job.queue.name)
        return await self._effect(
            job,
            lambda c: effects.send_notification(c, ref.order_id, str(job.id), channel),
        )

    async def _saga_inventory(self, job: Job, attempt: int) -> dict[str, Any]:
        result = await self._inventory(job, attempt)

        # Also after a duplicate: the earlier run may have died before it
        # enqueued the next step, and the same job id makes this harmless.
        if result["outcome"] in (effects.APPLIED, effects.DUPLICATE):
            await jobs.enqueue_saga_step(
                self.producer, _order_ref(job), "billing", "saga"
            )
        return result

    async def _saga_billing(self, job: Job, attempt: int) -> dict[str, Any]:
        result = await self._billing(job, attempt)
        if result["outcome"] in (effects.APPLIED, effects.DUPLICATE):
            await jobs.enqueue_saga_step(
                self.producer, _order_ref(job), "notify", "saga"
            )
        return result

    async def _saga_compensate(self, job: Job, attempt: int) -> dict[str, Any]:
        ref = _order_ref(job)
        reason = "billing failed for good; stock returned"
        return await self._effect(
            job,
            lambda c: effects.compensate_inventory(
                c, ref.order_id, str(job.id), reason
            ),
        )

    async def _record_updated(self, job: Job, attempt: int) -> dict[str, Any]:
        data = job.data or {}
        resource_id = str(data.get("resource_id"))
        window_ms = int(data.get("window_ms", throttle.DEFAULT_WINDOW_MS))
        if not await throttle.try_acquire(self.redis, resource_id, window_ms):
            return {"resource_id": resource_id, "throttled": True}
        async with self.db.connection() as conn:
            await effects.emit_record_update(conn, resource_id, str(job.id))
        return {"resource_id": resource_id, "throttled": False}

    async def _batch_report(self, job: Job, attempt: int) -> dict[str, Any]:
        data = job.data or {}
        work_ms = int(data.get("work_ms", 0))
        if work_ms > 0:
            await asyncio.sleep(work_ms / 1000)
        report_id = str(data.get("report_id"))
        async with self.db.connection() as conn:
            outcome = await effects.write_batch_report(
                conn, report_id, str(job.id), int(data.get("rows", 0))
            )
        return {"report_id": report_id, "outcome": outcome}

    # -- failures ----------------------------------------------------------------

    def on_failed(self, job: Job, err: BaseException) -> None:
        """The worker's `failed` event: settle the order if the job is done trying."""
        attempts = int((job.opts or {}).get("attempts", 1) or 1)
        final = isinstance(err, UnrecoverableError) or job.attemptsMade >= attempts
        if not final:
            logger.info("job %s attempt %d failed: %s", job.id, job.attemptsMade, err)
            return
        task = asyncio.ensure_future(self.on_final_failure(job, err))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_final_failure(self, job: Job, err: BaseException) -> None:
        if job.name in ("record-updated", "batch-report"):
            logger.warning("job %s failed for good: %s", job.id, err)
            return
        try:
            ref = _order_ref(job)
            if job.name == "saga-billing":
                await jobs.enqueue_saga_step(self.producer, ref, "compensate", "saga")
                logger.info(
                    "order %s: billing failed for good, compensating", ref.order_id
                )
                return
            async with self.db.connection() as conn:
                failed = await effects.mark_order_failed(
                    conn, ref.order_id, f"{job.name} failed: {err}"
                )
            if failed:
                logger.info(
                    "order %s failed: %s %s: %s", ref.order_id, job.name, job.id, err
                )
        except Exception:
            # Replay settles the order later from what Redis still says.
            logger.exception("could not settle the order of failed job %s", job.id)

    async def drain(self) -> None:
        """Wait for the failure handlers still running."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
