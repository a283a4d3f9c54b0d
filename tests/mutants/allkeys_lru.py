"""Eviction policy `allkeys-lru` instead of `noeviction`: under memory pressure
Redis silently drops keys, jobs among them, instead of refusing writes."""

from __future__ import annotations

from typing import Any

TARGETS = [
    "properties/test_queue_promises.py::test_memory_pressure_fails_loudly_and_drops_no_job"
]


def configure(topology: Any) -> None:
    for name in ("redis-1", "redis-2", "redis-3"):
        with topology.admin(name) as node:
            node.config_set("maxmemory-policy", "allkeys-lru")
