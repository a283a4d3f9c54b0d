"""Names and environment settings shared by every part of the reference system.

Queue names carry the `{app-main}` hash tag so that all of the system's keys
land in one slot: a flow spans three queues and must be written atomically.
Critical, general and batch traffic have queues (and workers) of their own, so
a flood of batch work cannot delay a critical notification.
"""

from __future__ import annotations

import logging
import os

from system.errors import SystemConfigError
from system.redis_client import RedisSettings

logger = logging.getLogger(__name__)

HASH_TAG = "{app-main}"
QUEUE_PREFIX = "bull"

QUEUES: dict[str, str] = {
    "inventory": f"{HASH_TAG}:inventory",
    "billing": f"{HASH_TAG}:billing",
    "critical": f"{HASH_TAG}:critical",
    "general": f"{HASH_TAG}:general",
    "batch": f"{HASH_TAG}:batch",
}

ENV_REDIS = "BULLPROOF_REDIS"
ENV_PG_DSN = "BULLPROOF_PG_DSN"
ENV_PRELOAD = "BULLPROOF_PRELOAD"
ENV_WORK_MS = "BULLPROOF_WORK_MS"


def queue_name(name: str) -> str:
    """The full queue name for a short name (`billing`) or a full one."""
    if name in QUEUES:
        return QUEUES[name]
    if name in QUEUES.values():
        return name
    raise SystemConfigError(
        f"unknown queue {name!r}; expected one of {sorted(QUEUES)} "
        f"or {sorted(QUEUES.values())}"
    )


def short_queue_name(name: str) -> str:
    """The short name (`billing`) of a queue given by either name."""
    full = queue_name(name)
    return next(short for short, q in QUEUES.items() if q == full)


def redis_settings_from_env() -> RedisSettings:
    """The Redis settings a worker or a command-line tool was started with."""
    raw = os.environ.get(ENV_REDIS)
    if not raw:
        raise SystemConfigError(
            f"{ENV_REDIS} is not set; it must hold RedisSettings.to_json() output"
        )
    try:
        return RedisSettings.from_json(raw)
    except ValueError as exc:
        raise SystemConfigError(f"{ENV_REDIS}: {exc}") from exc


def pg_dsn_from_env() -> str:
    """The PostgreSQL DSN a worker or a command-line tool was started with."""
    dsn = os.environ.get(ENV_PG_DSN)
    if not dsn:
        raise SystemConfigError(f"{ENV_PG_DSN} is not set; it must hold a DSN")
    return dsn
