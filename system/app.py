"""The reference system as one object: its database, its producers, its clients.

`System` is what a caller (a test, the bench, replay, archive) holds to place
orders and inspect state. It owns a PostgreSQL pool, a `Producer` (one
FlowProducer and one Queue per queue, each with its own Redis client) and one
more Redis client for plain commands (throttle keys, reset, status).
"""

from __future__ import annotations

import logging
from types import TracebackType

from redis.asyncio import Redis

from system import config, redis_client
from system.db import Database, apply_schema
from system.jobs import Producer
from system.redis_client import RedisSettings

logger = logging.getLogger(__name__)


class System:
    """A handle on the running system; use `async with System(...) as system`."""

    def __init__(self, redis: RedisSettings, pg_dsn: str, *, db_size: int = 10):
        self.settings = redis
        self.db = Database(pg_dsn, max_size=db_size)
        self.producer = Producer(redis)
        self._redis: Redis | None = None

    @classmethod
    def from_env(cls) -> System:
        return cls(config.redis_settings_from_env(), config.pg_dsn_from_env())

    @property
    def redis(self) -> Redis:
        """A client of the current master for plain commands (not for bullmq)."""
        if self._redis is None:
            self._redis = redis_client.master_client(self.settings)
        return self._redis

    async def start(self, *, schema: bool = True) -> None:
        if schema:
            await apply_schema(self.db)

    async def close(self) -> None:
        await self.producer.close()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        await self.db.close()

    async def __aenter__(self) -> System:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
