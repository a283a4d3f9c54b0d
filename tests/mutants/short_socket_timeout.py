"""redis-py's defaults on the workers' Sentinel clients: a 5 s socket timeout
and no retries, below bullmq's blocking wait, with bullmq's default 15 s
run-retry delay: an idle worker's blocking call times out and it sits out the
delay before it takes the next job."""

from __future__ import annotations

import os
from typing import Any

from system import config, redis_client, worker

TARGETS = [
    "properties/test_liveness.py::test_an_order_after_an_idle_spell_is_final_in_time"
]

_original = redis_client.master_client


def _default_client(settings: redis_client.RedisSettings) -> Any:
    return _original(settings.with_changes(socket_timeout=5.0, retries=0))


# Only in worker processes (they are told to preload this module): the bug is
# in how workers connect, not in the harness that observes them.
if __name__ in os.environ.get(config.ENV_PRELOAD, "").split(","):
    redis_client.master_client = _default_client
    worker.WORKER_OPTIONS["runRetryDelay"] = 15_000
