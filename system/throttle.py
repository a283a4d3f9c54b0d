"""Throttling high-frequency updates: at most one emit per resource per window.

A record that changes every millisecond should reach clients at most once per
window. The first update in a window claims a key with SET NX and an expiry;
later updates in the same window find the key taken and are dropped. The
claim is one atomic command, so two workers cannot both emit in one window.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from system import config

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_MS = 5000


def throttle_key(resource_id: str) -> str:
    return f"{config.HASH_TAG}:throttle:{resource_id}"


async def try_acquire(
    redis: Redis, resource_id: str, window_ms: int = DEFAULT_WINDOW_MS
) -> bool:
    """True for the first caller in a window, False for every other caller."""
    if window_ms <= 0:
        raise ValueError(f"window_ms must be > 0, got {window_ms}")
    return bool(await redis.set(throttle_key(resource_id), "1", nx=True, px=window_ms))
