"""Job ids and trace ids derived from the business event, never random.

The same order always yields the same job ids, so BullMQ refuses to enqueue a
second copy of a job that still exists, whoever adds it: the first submission,
a resubmission, or replay. The trace id is derived the same way, so a client
that deduplicates on it sees one notification per order however often the
notification job runs.

`job_ids` and `saga_job_ids` are seams: replacing them (say, with random ids)
is how a test shows what deterministic ids protect against.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

_TRACE_NAMESPACE = uuid.UUID("6f0c1b1e-8a8e-4c55-9d3c-1d2f0b7a0e11")


@dataclass(frozen=True)
class OrderJobIds:
    """The three jobs of an order's flow: the parent and its two children."""

    notify: str
    inventory: str
    billing: str


@dataclass(frozen=True)
class SagaJobIds:
    """The steps of an order's saga, in the order they run."""

    inventory: str
    billing: str
    compensate: str
    notify: str


def job_ids(order_id: str) -> OrderJobIds:
    return OrderJobIds(
        notify=f"order-{order_id}-notify",
        inventory=f"order-{order_id}-inventory",
        billing=f"order-{order_id}-billing",
    )


def saga_job_ids(order_id: str) -> SagaJobIds:
    return SagaJobIds(
        inventory=f"saga-{order_id}-inventory",
        billing=f"saga-{order_id}-billing",
        compensate=f"saga-{order_id}-compensate",
        notify=f"saga-{order_id}-notify",
    )


def trace_id(order_id: str) -> str:
    return str(uuid.uuid5(_TRACE_NAMESPACE, f"order:{order_id}"))


def record_update_job_id(resource_id: str, sequence: int) -> str:
    return f"record-{resource_id}-{sequence}"


def batch_report_job_id(report_id: str) -> str:
    return f"report-{report_id}"
