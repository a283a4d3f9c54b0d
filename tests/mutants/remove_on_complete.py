"""Completed jobs are removed at once (`removeOnComplete: true`) while the
system still relies on job-id deduplication: re-adding an id whose job already
finished runs that job again."""

from __future__ import annotations

from system import jobs

TARGETS = [
    "properties/test_queue_promises.py::test_duplicate_submissions_make_one_set_of_jobs"
]

jobs.DEFAULT_JOB_OPTIONS["removeOnComplete"] = True
