"""PostgreSQL access for the reference system: a small connection pool.

Connections go through the topology's `postgres.client` proxy, so a fault can
cut or slow them. A connection that saw a connection-level error, or whose
operation ran past `op_timeout`, is thrown away rather than handed out again;
the next caller gets a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
from collections.abc import AsyncIterator

import psycopg

from system.schema import CATALOGUE, FUNCTIONS, SCHEMA_SQL, TABLES

logger = logging.getLogger(__name__)

# Taken by every process that applies the schema, so concurrent starts do not
# race on CREATE TABLE IF NOT EXISTS (which is not safe under concurrency).
_SCHEMA_LOCK_KEY = 0x0B0110F

# Errors after which a connection cannot be trusted any more.
BROKEN_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    TimeoutError,
    asyncio.CancelledError,
)


def _stale(conn: psycopg.AsyncConnection) -> bool:
    """Whether an idle connection was closed under it (the server restarted,
    the link was cut): an idle connection has nothing to read unless the
    other end went away, and psycopg only notices at the next query, which
    would then fail for the caller."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


class Database:
    """At most `max_size` autocommit connections to one DSN, reused."""

    def __init__(
        self,
        dsn: str,
        *,
        max_size: int = 10,
        connect_timeout: float = 3.0,
        op_timeout: float = 15.0,
    ):
        self.dsn = dsn
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.op_timeout = op_timeout
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots = asyncio.Semaphore(max_size)
        self._closed = False

    async def _connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, connect_timeout=int(self.connect_timeout)
        )

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection for one unit of work, bounded by `op_timeout`."""
        if self._closed:
            raise RuntimeError("Database is closed")
        async with self._slots:
            conn = None
            while self._idle and conn is None:
                candidate = self._idle.pop()
                if _stale(candidate):
                    with contextlib.suppress(Exception):
                        await candidate.close()
                else:
                    conn = candidate
            broken = False
            try:
                async with asyncio.timeout(self.op_timeout):
                    if conn is None:
                        conn = await self._connect()
                    yield conn
            except BaseException as exc:
                broken = isinstance(exc, BROKEN_CONNECTION_ERRORS)
                raise
            finally:
                if conn is not None:
                    await self._give_back(conn, broken)

    async def _give_back(self, conn: psycopg.AsyncConnection, broken: bool) -> None:
        if broken or conn.closed or self._closed:
            with contextlib.suppress(Exception):
                await conn.close()
            return
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                await conn.rollback()
            except psycopg.Error:
                with contextlib.suppress(Exception):
                    await conn.close()
                return
        self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()


async def schema_present(db: Database) -> bool:
    """Whether every table and every catalogue SKU exists (a read-only check)."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT bool_and(to_regclass(t) IS NOT NULL) FROM unnest(%s::text[]) t",
            ([*TABLES, "stock"],),
        )
        row = await cur.fetchone()
        if row is None or not row[0]:
            return False
        cur = await conn.execute(
            "SELECT bool_and(to_regproc(f) IS NOT NULL) FROM unnest(%s::text[]) f",
            (list(FUNCTIONS),),
        )
        row = await cur.fetchone()
        if row is None or not row[0]:
            return False
        cur = await conn.execute(
            "SELECT count(*) FROM stock WHERE sku = ANY(%s)", (list(CATALOGUE),)
        )
        row = await cur.fetchone()
        return row is not None and row[0] == len(CATALOGUE)


async def apply_schema(db: Database) -> None:
    """Create every table and the catalogue's stock rows if they are missing.

    The DDL takes table locks that conflict with running effects (and could
    deadlock with them), so a process starting next to a busy system first
    checks, without locks, whether there is anything to do at all.
    """
    if await schema_present(db):
        return
    async with db.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
        await conn.execute(SCHEMA_SQL)
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO stock (sku, price_cents, on_hand, initial_on_hand) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (sku) DO NOTHING",
                [(sku, price, qty, qty) for sku, (price, qty) in CATALOGUE.items()],
            )
