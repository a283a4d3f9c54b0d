"""Children without `failParentOnFailure`: a child that fails for good leaves
its parent waiting for children in Redis forever."""

from __future__ import annotations

from system import jobs

TARGETS = ["properties/test_pipeline.py"]

jobs.CHILD_OPTIONS.clear()
