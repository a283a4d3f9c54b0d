"""The effects of the reference system, each in one guarded transaction.

Every effect locks its order's row, checks the order's state, writes its rows
and moves the order on, all in one transaction. A unique constraint on the
effect table (see `system.schema`) is what makes a redelivered job change
nothing: the insert conflicts, nothing else is written, and the effect
reports `DUPLICATE`. Callers log that outcome.

The order effects run as SQL functions (`bp_*` in `system.schema`): one
statement is one transaction and one round trip, so the hot stock rows stay
locked for microseconds. With the transaction spread over six round trips,
fifty concurrent reservations queued behind each other's stock locks and the
whole pipeline ran at a third of its speed.

The functions here are seams: a preloaded module can replace, say,
`record_billing` with a version that checks for an existing entry in one
transaction and writes in another, and the properties should then find the
duplicate charge.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import psycopg

from system.errors import InsufficientStock, PaymentDeclined

logger = logging.getLogger(__name__)

Outcome = Literal["applied", "duplicate", "skipped", "missing"]
APPLIED: Outcome = "applied"
DUPLICATE: Outcome = "duplicate"
SKIPPED: Outcome = "skipped"  # the order already failed; nothing to do
MISSING: Outcome = "missing"  # no such order (for instance after a reset)

DECLINED_PAYMENT = "declined-card"
FLAKY_PAYMENT = "flaky-card"


async def _call(conn: psycopg.AsyncConnection, sql: str, args: tuple[Any, ...]) -> str:
    cur = await conn.execute(sql, args)
    row = await cur.fetchone()
    assert row is not None, sql
    return str(row[0])


_OUTCOMES: dict[str, Outcome] = {o: o for o in (APPLIED, DUPLICATE, SKIPPED, MISSING)}


def _outcome(value: str) -> Outcome:
    if value not in _OUTCOMES:
        raise RuntimeError(f"unexpected effect outcome {value!r}")
    return _OUTCOMES[value]


async def reserve_inventory(
    conn: psycopg.AsyncConnection, order_id: str, job_id: str
) -> Outcome:
    """One `reserve` movement per order line, and the stock taken off."""
    try:
        value = await _call(
            conn, "SELECT bp_reserve_inventory(%s, %s)", (order_id, job_id)
        )
    except psycopg.errors.RaiseException as exc:
        if "insufficient stock" in str(exc):
            raise InsufficientStock(str(exc).splitlines()[0]) from exc
        raise
    return _outcome(value)


async def record_billing(
    conn: psycopg.AsyncConnection, order_id: str, job_id: str, attempt: int
) -> Outcome:
    """One billing entry per order, unless the payment method is declined."""
    value = await _call(
        conn,
        "SELECT bp_record_billing(%s, %s, %s, %s, %s)",
        (order_id, job_id, attempt, DECLINED_PAYMENT, FLAKY_PAYMENT),
    )
    if value == "declined":
        raise PaymentDeclined(f"order {order_id}: payment declined (attempt {attempt})")
    return _outcome(value)


async def send_notification(
    conn: psycopg.AsyncConnection, order_id: str, job_id: str, channel: str
) -> Outcome:
    """One notification per order; the order is then completed."""
    return _outcome(
        await _call(
            conn,
            "SELECT bp_send_notification(%s, %s, %s)",
            (order_id, job_id, channel),
        )
    )


async def compensate_inventory(
    conn: psycopg.AsyncConnection, order_id: str, job_id: str, reason: str
) -> Outcome:
    """Put back the stock an order reserved, once, and fail the order."""
    return _outcome(
        await _call(
            conn,
            "SELECT bp_compensate_inventory(%s, %s, %s)",
            (order_id, job_id, reason),
        )
    )


async def _fail(conn: psycopg.AsyncConnection, order_id: str, reason: str) -> bool:
    cur = await conn.execute(
        "UPDATE orders SET state = 'failed', failure_reason = %s,"
        " updated_at = clock_timestamp()"
        " WHERE order_id = %s AND state IN ('accepted', 'processing')"
        " RETURNING order_id",
        (reason[:500], order_id),
    )
    return await cur.fetchone() is not None


async def mark_order_failed(
    conn: psycopg.AsyncConnection, order_id: str, reason: str
) -> bool:
    """Fail an unfinished order; False if it was already finished or missing."""
    async with conn.transaction():
        return await _fail(conn, order_id, reason)


async def record_delivery(
    conn: psycopg.AsyncConnection,
    *,
    queue: str,
    job_id: str,
    job_name: str,
    attempt: int,
    worker: str,
    pid: int,
) -> None:
    """One row per processor invocation, committed on its own."""
    await conn.execute(
        "INSERT INTO deliveries (queue, job_id, job_name, attempt, worker, pid)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (queue, job_id, job_name, attempt, worker, pid),
    )


async def emit_record_update(
    conn: psycopg.AsyncConnection, resource_id: str, job_id: str
) -> None:
    await conn.execute(
        "INSERT INTO record_emits (resource_id, job_id) VALUES (%s, %s)",
        (resource_id, job_id),
    )


async def write_batch_report(
    conn: psycopg.AsyncConnection, report_id: str, job_id: str, rows: int
) -> Outcome:
    cur = await conn.execute(
        "INSERT INTO batch_reports (report_id, job_id, rows_scanned)"
        " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
        (report_id, job_id, rows),
    )
    return APPLIED if await cur.fetchone() is not None else DUPLICATE
