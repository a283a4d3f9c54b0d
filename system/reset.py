"""Resetting the system between test examples: empty tables, queues, throttles.

Meant for a quiet system (no job in flight): it deletes every row the system
wrote, puts the stock back to its initial level, and deletes every Redis key
under the system's hash tag (queues, jobs, throttle keys) in one script. Both
halves are a single round trip each, so a reset of an idle system takes a few
milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import time

from system import config
from system.app import System
from system.schema import TABLES

logger = logging.getLogger(__name__)

# KEYS is acceptable here: the keyspace belongs to one test system and is small.
_DELETE_KEYS_LUA = """
local n = 0
for _, pattern in ipairs(ARGV) do
  local keys = redis.call('KEYS', pattern)
  for i = 1, #keys, 500 do
    n = n + redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
  end
end
return n
"""

_RESET_SQL = "; ".join(
    [f"DELETE FROM {table}" for table in TABLES]
    + ["UPDATE stock SET on_hand = initial_on_hand WHERE on_hand <> initial_on_hand"]
)


def key_patterns() -> list[str]:
    return [f"{config.QUEUE_PREFIX}:{config.HASH_TAG}:*", f"{config.HASH_TAG}:*"]


async def reset_redis(system: System) -> int:
    """Delete every key of the system's queues and throttles; returns how many."""
    return int(await system.redis.eval(_DELETE_KEYS_LUA, 0, *key_patterns()))


async def reset_database(system: System) -> None:
    async with system.db.connection() as conn:
        await conn.execute(_RESET_SQL)


async def reset(system: System) -> float:
    """Reset PostgreSQL and Redis at once; returns the seconds it took."""
    started = time.perf_counter()
    deleted, _ = await asyncio.gather(reset_redis(system), reset_database(system))
    elapsed = time.perf_counter() - started
    logger.debug("reset: %d keys deleted in %.1f ms", deleted, elapsed * 1000)
    return elapsed
