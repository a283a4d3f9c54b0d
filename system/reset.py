"""Resetting the system between test examples: empty tables, queues, throttles.

Meant for a quiet system: it deletes every row the system wrote, puts the
stock back to its initial level, and deletes every Redis key under the
system's hash tag (queues, jobs, throttle keys) in one script. Both halves are
a single round trip each, so a reset of an idle system takes a few
milliseconds.

An order is `completed` in PostgreSQL a moment before its last job is marked
completed in Redis. Deleting the keys in that moment would make the worker
fail the job it is finishing, so the script refuses while any queue has an
active job, and `reset` retries for up to `settle_timeout` seconds before it
deletes anyway.
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
if ARGV[1] ~= 'force' then
  for _, active in ipairs(KEYS) do
    if redis.call('LLEN', active) > 0 then return -1 end
  end
end
local n = 0
for i = 2, #ARGV do
  local pattern = ARGV[i]
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


def active_keys() -> list[str]:
    return [f"{config.QUEUE_PREFIX}:{queue}:active" for queue in config.QUEUES.values()]


async def reset_redis(system: System, settle_timeout: float = 5.0) -> int:
    """Delete every key of the system's queues and throttles; returns how many.

    Waits (up to `settle_timeout`) for the queues to have no active job.
    """
    keys = active_keys()
    deadline = time.monotonic() + settle_timeout
    while True:
        force = "force" if time.monotonic() >= deadline else "wait"
        deleted = int(
            await system.redis.eval(
                _DELETE_KEYS_LUA, len(keys), *keys, force, *key_patterns()
            )
        )
        if deleted >= 0:
            if force == "force":
                logger.warning("reset: jobs still active after %.1f s", settle_timeout)
            return deleted
        await asyncio.sleep(0.005)


async def reset_database(system: System) -> None:
    async with system.db.connection() as conn:
        await conn.execute(_RESET_SQL)


async def reset(system: System, settle_timeout: float = 5.0) -> float:
    """Reset Redis, then PostgreSQL; returns the seconds it took."""
    started = time.perf_counter()
    # Redis first: a job still finishing must be done before its order's rows
    # disappear under it.
    deleted = await reset_redis(system, settle_timeout)
    await reset_database(system)
    elapsed = time.perf_counter() - started
    logger.debug("reset: %d keys deleted in %.1f ms", deleted, elapsed * 1000)
    return elapsed
