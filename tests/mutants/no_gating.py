"""Notification without gating: an order's three jobs are added as plain jobs
instead of a flow, so the notification does not wait for its children."""

from __future__ import annotations

from system import ids, jobs

TARGETS = ["properties/test_pipeline.py"]


async def _enqueue_plain(
    producer: jobs.Producer, ref: jobs.OrderRef, source: str
) -> None:
    job = ids.job_ids(ref.order_id)
    await producer.add_job(
        "inventory",
        "update-inventory",
        jobs.order_payload(ref, "inventory", source),
        job.inventory,
    )
    await producer.add_job(
        "billing",
        "record-billing",
        jobs.order_payload(ref, "billing", source),
        job.billing,
    )
    notify_queue = "critical" if ref.priority == "critical" else "general"
    await producer.add_job(
        notify_queue,
        "notify-user",
        jobs.order_payload(ref, "notify", source),
        job.notify,
    )


jobs.enqueue_order = _enqueue_plain
