"""Replay re-adds unfinished orders under fresh job ids, so an order whose jobs
are still in Redis gets a second set."""

from __future__ import annotations

import uuid

from system import ids, jobs, replay

TARGETS = ["properties/test_queue_promises.py::test_replay_adds_no_second_set_of_jobs"]


async def _replay_flow(producer: jobs.Producer, ref: jobs.OrderRef) -> None:
    tag = uuid.uuid4().hex[:8]
    original = ids.job_ids
    ids.job_ids = lambda order_id: ids.OrderJobIds(  # type: ignore[assignment]
        notify=f"order-{order_id}-notify-{tag}",
        inventory=f"order-{order_id}-inventory-{tag}",
        billing=f"order-{order_id}-billing-{tag}",
    )
    try:
        await jobs.enqueue_order(producer, ref, "replay")
    finally:
        ids.job_ids = original


replay.replay_flow = _replay_flow
