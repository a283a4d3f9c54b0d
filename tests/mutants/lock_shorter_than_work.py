"""Work that outlives its lock: billing blocks the event loop for longer than
the lock duration, so the lock is never renewed and the job is handed to
another worker while the first still runs it."""

from __future__ import annotations

import time

from bullmq import Job

from system import processors

TARGETS = ["properties/test_pipeline.py"]

# Longer than the harness's two-second lock.
BLOCKING_WORK_S = 2.5


async def _blocking_work(job: Job) -> None:
    if job.name == "record-billing":
        time.sleep(BLOCKING_WORK_S)


processors.simulate_work = _blocking_work
