"""Connecting the reference system to Redis through Sentinel, ready for failover.

Every part of the system (producers, workers, replay, archive) builds its Redis
clients here, from one `RedisSettings` value that the topology hands out. Each
caller gets a client of its own: bullmq closes the pool it was given when its
object closes, so sharing a client between two bullmq objects silences the
other one.

Sentinel tells clients the address that a node announces, and in a bullproof
topology nodes announce the proxy that their peers use. `address_map` turns
that announced address into the one this client should dial instead (its own
proxy to the same node), so clients and peers can be cut apart separately.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    ReadOnlyError,
    TimeoutError,
)

logger = logging.getLogger(__name__)

# bullmq blocks for up to 10 s waiting for a job (BZPOPMIN); a socket timeout
# below that makes an idle worker look dead and reconnect, late.
DEFAULT_SOCKET_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class RedisSettings:
    """Where the Sentinels are and how a client should talk to the master."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    password: str | None = None
    sentinel_password: str | None = None
    address_map: dict[str, str] = field(default_factory=dict)
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT_S
    connect_timeout: float = 2.0
    retries: int = 40
    backoff_cap: float = 0.5
    backoff_base: float = 0.05

    def __post_init__(self) -> None:
        if not self.sentinels:
            raise ValueError("RedisSettings.sentinels must name at least one Sentinel")
        if not self.master_name:
            raise ValueError("RedisSettings.master_name must not be empty")
        if self.socket_timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("RedisSettings timeouts must be > 0 seconds")

    def to_json(self) -> str:
        return json.dumps(
            {
                "sentinels": [list(s) for s in self.sentinels],
                "master_name": self.master_name,
                "password": self.password,
                "sentinel_password": self.sentinel_password,
                "address_map": self.address_map,
                "socket_timeout": self.socket_timeout,
                "connect_timeout": self.connect_timeout,
                "retries": self.retries,
                "backoff_cap": self.backoff_cap,
                "backoff_base": self.backoff_base,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> RedisSettings:
        try:
            raw: dict[str, Any] = json.loads(text)
            raw["sentinels"] = tuple((str(h), int(p)) for h, p in raw["sentinels"])
            return cls(**raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"invalid Redis settings JSON ({exc}); expected the output of "
                "RedisSettings.to_json()"
            ) from exc

    def with_changes(self, **changes: Any) -> RedisSettings:
        values = json.loads(self.to_json())
        values["sentinels"] = self.sentinels
        values.update(changes)
        return RedisSettings(**values)


class FollowingConnection(SentinelManagedConnection):
    """A master connection that asks the Sentinels again on every reconnect.

    redis-py 8's asyncio client reconnects through `connect_check_health`,
    which skips the Sentinel lookup of `SentinelManagedConnection.connect`; a
    retried command then dials the dead master until its retries run out. The
    lookup is done here, where every reconnect passes.
    """

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected and self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(
            check_health=check_health, retry_socket_connect=retry_socket_connect
        )


def _key(host: str, port: int | str) -> str:
    return f"{host}:{port}"


class MappedSentinel(Sentinel):
    """A Sentinel manager that dials a mapped address instead of the announced one."""

    def __init__(self, address_map: dict[str, str], *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.address_map = dict(address_map)

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        host, port = await super().discover_master(service_name)
        mapped = self.address_map.get(_key(host, port))
        if mapped is None:
            return host, int(port)
        mapped_host, _, mapped_port = mapped.rpartition(":")
        return mapped_host, int(mapped_port)


class FollowingPipeline(Pipeline):
    """A pipeline that treats a demoted master like a lost connection.

    A script that writes inside MULTI/EXEC on a master that has just been
    demoted fails with ReadOnlyError after EXEC, which redis-py raises as is:
    the connection stays on the replica and every retry fails the same way.
    Dropping the pool's connections and raising ConnectionError makes the
    retry ask the Sentinels for the new master.
    """

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return await super().execute(raise_on_error)
        except ReadOnlyError as exc:
            await self.connection_pool.disconnect()
            raise ConnectionError(f"the master was demoted: {exc}") from exc


class SentinelRedis(Redis):
    """A master client that follows failovers in pipelines too, and closes its
    Sentinel connections on `aclose`."""

    sentinel_manager: MappedSentinel | None = None

    def pipeline(
        self, transaction: bool = True, shard_hint: str | None = None
    ) -> FollowingPipeline:
        return FollowingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            await self.sentinel_manager.aclose()


def _retry(settings: RedisSettings) -> Retry:
    return Retry(
        ExponentialBackoff(cap=settings.backoff_cap, base=settings.backoff_base),
        settings.retries,
    )


def sentinel_manager(settings: RedisSettings) -> MappedSentinel:
    """The Sentinel manager behind `master_client`, for callers that need both."""
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": settings.connect_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "decode_responses": True,
    }
    if settings.sentinel_password:
        sentinel_kwargs["password"] = settings.sentinel_password
    return MappedSentinel(
        settings.address_map,
        list(settings.sentinels),
        sentinel_kwargs=sentinel_kwargs,
    )


def master_client(settings: RedisSettings) -> Redis:
    """A new asyncio client for the current master, set up for bullmq.

    `decode_responses=True` because bullmq compares job ids as text. Retries
    with a short exponential backoff ride out a failover (about two to three
    seconds with a one-second down-after), and each reconnect asks the
    Sentinels again, so the client follows the new master.
    """
    manager = sentinel_manager(settings)
    client: SentinelRedis = manager.master_for(
        settings.master_name,
        redis_class=SentinelRedis,
        password=settings.password,
        decode_responses=True,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        retry=_retry(settings),
        retry_on_error=[ConnectionError, TimeoutError, BusyLoadingError],
        connection_class=FollowingConnection,
    )
    client.sentinel_manager = manager
    return client
