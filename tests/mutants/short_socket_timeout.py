"""redis-py's defaults on Sentinel clients: a 5 s socket timeout and no
retries, below bullmq's blocking wait, with bullmq's default 15 s run-retry
delay: an idle worker's blocking call times out and it sits out the delay."""

from __future__ import annotations

from typing import Any

from system import redis_client, worker

TARGETS = ["properties/test_pipeline.py"]

_original = redis_client.master_client


def _default_client(settings: redis_client.RedisSettings) -> Any:
    return _original(settings.with_changes(socket_timeout=5.0, retries=0))


redis_client.master_client = _default_client
worker.WORKER_OPTIONS["runRetryDelay"] = 15_000
