"""Job ids are random instead of derived from the order, so a resubmitted or
replayed order gets a second set of jobs."""

from __future__ import annotations

import uuid

from system import ids

TARGETS = [
    "properties/test_queue_promises.py::test_duplicate_submissions_make_one_set_of_jobs"
]


def _random_job_ids(order_id: str) -> ids.OrderJobIds:
    tag = uuid.uuid4().hex[:8]
    return ids.OrderJobIds(
        notify=f"order-{order_id}-notify-{tag}",
        inventory=f"order-{order_id}-inventory-{tag}",
        billing=f"order-{order_id}-billing-{tag}",
    )


ids.job_ids = _random_job_ids
