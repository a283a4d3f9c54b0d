"""How the system enqueues work: job options, the order flow, and retried adds.

An order becomes one BullMQ flow: the parent `notify-user` on a notification
queue (critical or general), with children `update-inventory` and
`record-billing`. Both children carry `failParentOnFailure`, so a child that
fails for good fails the parent instead of leaving it waiting forever. A saga
order is a chain instead: `saga-inventory`, then `saga-billing`, then
`saga-notify`, with `saga-compensate` when billing fails for good.

Adds that fail while Redis fails over (connection errors, or a master that
refuses writes for now, such as NOREPLICAS under `min-replicas-to-write`) are
retried with the same job ids for up to `ENQUEUE_DEADLINE_S`; a retried add
cannot duplicate anything because the ids are deterministic.

Seams (module-level, looked up at call time, so a preloaded module can swap
them): `DEFAULT_JOB_OPTIONS`, `CHILD_OPTIONS`, `order_flow`, `enqueue_order`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bullmq import FlowProducer, Queue
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from system import config, ids, redis_client
from system.errors import EnqueueFailed
from system.redis_client import RedisSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_JOB_OPTIONS: dict[str, Any] = {
    "attempts": 3,
    "backoff": {"type": "exponential", "delay": 1000},
    "removeOnComplete": 1000,
    "removeOnFail": 5000,
}

# Children of an order's flow: a child that fails for good fails the parent.
CHILD_OPTIONS: dict[str, Any] = {"failParentOnFailure": True}

# MasterNotFoundError is a ConnectionError; OSError covers a refused dial that
# the client did not wrap.
ENQUEUE_RETRY_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    OSError,
)
# Refusals a master gives while it cannot accept writes for now, as opposed
# to errors in the command itself.
RETRYABLE_REFUSALS: tuple[str, ...] = ("NOREPLICAS", "MASTERDOWN", "TRYAGAIN")
ENQUEUE_DEADLINE_S = 30.0
ENQUEUE_RETRY_DELAY_S = 0.2

ORDER_JOB_NAMES = ("notify-user", "update-inventory", "record-billing")
SAGA_STEPS = ("inventory", "billing", "compensate", "notify")


@dataclass(frozen=True)
class OrderRef:
    """What a job needs to know about an order: its ids and routing, no more."""

    order_id: str
    trace_id: str
    priority: str = "general"
    workflow: str = "flow"

    @property
    def notification_queue(self) -> str:
        return config.QUEUES["critical" if self.priority == "critical" else "general"]


def job_options(job_id: str, **extra: Any) -> dict[str, Any]:
    return {**DEFAULT_JOB_OPTIONS, **extra, "jobId": job_id}


def order_payload(ref: OrderRef, step: str, source: str) -> dict[str, Any]:
    """A thin payload: the order id and metadata; workers read the rest from SQL."""
    return {
        "order_id": ref.order_id,
        "metadata": {
            "trace_id": ref.trace_id,
            "step": step,
            "source": source,
            "priority": ref.priority,
            "workflow": ref.workflow,
        },
    }


def order_flow(ref: OrderRef, source: str = "place_order") -> dict[str, Any]:
    """The flow of one order, with the job ids from `ids.job_ids`."""
    job = ids.job_ids(ref.order_id)
    return {
        "name": "notify-user",
        "queueName": ref.notification_queue,
        "data": order_payload(ref, "notify", source),
        "opts": job_options(job.notify),
        "children": [
            {
                "name": "update-inventory",
                "queueName": config.QUEUES["inventory"],
                "data": order_payload(ref, "inventory", source),
                "opts": job_options(job.inventory, **CHILD_OPTIONS),
            },
            {
                "name": "record-billing",
                "queueName": config.QUEUES["billing"],
                "data": order_payload(ref, "billing", source),
                "opts": job_options(job.billing, **CHILD_OPTIONS),
            },
        ],
    }


def saga_step(ref: OrderRef, step: str) -> tuple[str, str, str]:
    """(queue, job name, job id) of one saga step."""
    job = ids.saga_job_ids(ref.order_id)
    steps = {
        "inventory": (config.QUEUES["inventory"], "saga-inventory", job.inventory),
        "billing": (config.QUEUES["billing"], "saga-billing", job.billing),
        "compensate": (config.QUEUES["inventory"], "saga-compensate", job.compensate),
        "notify": (ref.notification_queue, "saga-notify", job.notify),
    }
    if step not in steps:
        raise ValueError(f"unknown saga step {step!r}; expected one of {SAGA_STEPS}")
    return steps[step]


def retryable_refusal(exc: ResponseError) -> bool:
    return str(exc).startswith(RETRYABLE_REFUSALS)


async def retry_enqueue(what: str, add: Callable[[], Awaitable[T]]) -> T:
    """Run `add` until it succeeds, retrying connection errors for a bounded time.

    Every retry uses the same job ids, so an add that did reach Redis before
    its reply was lost is not duplicated by the next try.
    """
    deadline = time.monotonic() + ENQUEUE_DEADLINE_S
    tries = 0
    while True:
        tries += 1
        try:
            result = await add()
        except Exception as exc:
            retryable = isinstance(exc, ENQUEUE_RETRY_ERRORS) or (
                isinstance(exc, ResponseError) and retryable_refusal(exc)
            )
            if not retryable:
                raise
            if time.monotonic() >= deadline:
                raise EnqueueFailed(
                    f"could not enqueue {what} in {ENQUEUE_DEADLINE_S:.0f} s "
                    f"({tries} tries); last error: {exc!r}"
                ) from exc
            logger.debug("enqueue of %s failed (%r); retrying", what, exc)
            await asyncio.sleep(ENQUEUE_RETRY_DELAY_S)
            continue
        if tries > 1:
            logger.info("enqueued %s after %d tries", what, tries)
        return result


class Producer:
    """Adds jobs: one FlowProducer and one Queue per queue, each its own client."""

    def __init__(self, settings: RedisSettings):
        self.settings = settings
        self._flow_producer: FlowProducer | None = None
        self._queues: dict[str, Queue] = {}

    @property
    def flow_producer(self) -> FlowProducer:
        if self._flow_producer is None:
            self._flow_producer = FlowProducer(
                {"connection": redis_client.master_client(self.settings)}
            )
        return self._flow_producer

    def queue(self, name: str) -> Queue:
        full = config.queue_name(name)
        if full not in self._queues:
            self._queues[full] = Queue(
                full, {"connection": redis_client.master_client(self.settings)}
            )
        return self._queues[full]

    async def add_job(
        self, queue: str, name: str, data: dict[str, Any], job_id: str
    ) -> None:
        q = self.queue(queue)
        await retry_enqueue(
            f"{name} {job_id}", lambda: q.add(name, data, job_options(job_id))
        )

    async def close(self) -> None:
        closing: list[Awaitable[Any]] = [q.close() for q in self._queues.values()]
        if self._flow_producer is not None:
            closing.append(self._flow_producer.close())
        self._queues.clear()
        self._flow_producer = None
        await asyncio.gather(*closing, return_exceptions=True)


async def enqueue_order(producer: Producer, ref: OrderRef, source: str) -> None:
    """Put an order's work into Redis: its flow, or the first step of its saga."""
    if ref.workflow == "saga":
        await enqueue_saga_step(producer, ref, "inventory", source)
        return
    flow = order_flow(ref, source)
    await retry_enqueue(
        f"flow of order {ref.order_id}", lambda: producer.flow_producer.add(flow)
    )


async def enqueue_saga_step(
    producer: Producer, ref: OrderRef, step: str, source: str
) -> None:
    queue, name, job_id = saga_step(ref, step)
    await producer.add_job(queue, name, order_payload(ref, step, source), job_id)


async def enqueue_record_update(
    producer: Producer, resource_id: str, sequence: int
) -> str:
    """A high-frequency update of `resource_id`; workers throttle its emits."""
    job_id = ids.record_update_job_id(resource_id, sequence)
    await producer.add_job(
        "general",
        "record-updated",
        {"resource_id": resource_id, "sequence": sequence},
        job_id,
    )
    return job_id


async def enqueue_batch_report(
    producer: Producer, report_id: str, rows: int, work_ms: int = 0
) -> str:
    """A batch report on the batch queue; `work_ms` makes each one take time."""
    job_id = ids.batch_report_job_id(report_id)
    await producer.add_job(
        "batch",
        "batch-report",
        {"report_id": report_id, "rows": rows, "work_ms": work_ms},
        job_id,
    )
    return job_id
