"""The effects of the reference system, each in one guarded transaction.

Every effect locks its order's row, checks the order's state, writes its rows
and moves the order on, all in one transaction. A unique constraint on the
effect table (see `system.schema`) is what makes a redelivered job change
nothing: the insert conflicts, nothing else is written, and the effect
reports `DUPLICATE`. Callers log that outcome.

The functions here are seams: a preloaded module can replace, say,
`record_billing` with a version that checks for an existing entry in one
transaction and writes in another, and the properties should then find the
duplicate charge.
"""

from __future__ import annotations

import logging
from typing import Literal

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


async def _lock_order(
    conn: psycopg.AsyncConnection, order_id: str
) -> tuple[str, int, str] | None:
    cur = await conn.execute(
        "SELECT state, total_cents, payment_method FROM orders"
        " WHERE order_id = %s FOR UPDATE",
        (order_id,),
    )
    row = await cur.fetchone()
    return None if row is None else (str(row[0]), int(row[1]), str(row[2]))


def _settled(state: str) -> Outcome | None:
    """The outcome for an order that no effect may touch any more."""
    if state == "completed":
        return DUPLICATE
    if state == "failed":
        return SKIPPED
    return None


async def _advance(conn: psycopg.AsyncConnection, order_id: str) -> None:
    await conn.execute(
        "UPDATE orders SET state = 'processing', updated_at = clock_timestamp()"
        " WHERE order_id = %s AND state = 'accepted'",
        (order_id,),
    )


async def _apply_stock(
    conn: psycopg.AsyncConnection, order_id: str, moved: list[tuple[str, int]]
) -> None:
    per_sku: dict[str, int] = {}
    for sku, delta in moved:
        per_sku[sku] = per_sku.get(sku, 0) + delta
    for sku, delta in sorted(per_sku.items()):
        cur = await conn.execute(
            "UPDATE stock SET on_hand = on_hand + %s"
            " WHERE sku = %s AND on_hand + %s >= 0 RETURNING on_hand",
            (delta, sku, delta),
        )
        if await cur.fetchone() is None:
            raise InsufficientStock(
                f"order {order_id}: not enough {sku} in stock for {-delta}"
            )


async def reserve_inventory(
    conn: psycopg.AsyncConnection, order_id: str, job_id: str
) -> Outcome:
    """One `reserve` movement per order line, and the stock taken off."""
    async with conn.transaction():
        order = await _lock_order(conn, order_id)
        if order is None:
            return MISSING
        settled = _settled(order[0])
        if settled:
            return settled
        cur = await conn.execute(
            "INSERT INTO inventory_movements"
            " (order_id, line_no, sku, delta, kind, job_id)"
            " SELECT order_id, line_no, sku, -quantity, 'reserve', %s"
            " FROM order_lines WHERE order_id = %s ORDER BY line_no"
            " ON CONFLICT DO NOTHING RETURNING sku, delta",
            (job_id, order_id),
        )
        moved = [(str(sku), int(delta)) for sku, delta in await cur.fetchall()]
        if not moved:
            return DUPLICATE
        await _apply_stock(conn, order_id, moved)
        await _advance(conn, order_id)
        return APPLIED


async def record_billing(
    conn: psycopg.AsyncConnection, order_id: str, job_id: str, attempt: int
) -> Outcome:
    """One billing entry per order, unless the payment method is declined."""
    async with conn.transaction():
        order = await _lock_order(conn, order_id)
        if order is None:
            return MISSING
        state, total, payment_method = order
        settled = _settled(state)
        if settled:
            return settled
        if payment_method == DECLINED_PAYMENT or (
            payment_method == FLAKY_PAYMENT and attempt <= 1
        ):
            raise PaymentDeclined(
                f"order {order_id}: {payment_method} declined (attempt {attempt})"
            )
        cur = await conn.execute(
            "INSERT INTO billing_entries (order_id, amount_cents, job_id)"
            " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
            (order_id, total, job_id),
        )
        if await cur.fetchone() is None:
            return DUPLICATE
        await _advance(conn, order_id)
        return APPLIED


async def send_notification(
    conn: psycopg.AsyncConnection, order_id: str, job_id: str, channel: str
) -> Outcome:
    """One notification per order; the order is then completed."""
    async with conn.transaction():
        order = await _lock_order(conn, order_id)
        if order is None:
            return MISSING
        settled = _settled(order[0])
        if settled:
            return settled
        cur = await conn.execute(
            "INSERT INTO notifications (order_id, trace_id, channel, job_id)"
            " SELECT order_id, trace_id, %s, %s FROM orders WHERE order_id = %s"
            " ON CONFLICT DO NOTHING RETURNING id",
            (channel, job_id, order_id),
        )
        if await cur.fetchone() is None:
            return DUPLICATE
        await conn.execute(
            "UPDATE orders SET state = 'completed', updated_at = clock_timestamp()"
            " WHERE order_id = %s",
            (order_id,),
        )
        return APPLIED


async def compensate_inventory(
    conn: psycopg.AsyncConnection, order_id: str, job_id: str, reason: str
) -> Outcome:
    """Put back the stock an order reserved, once, and fail the order."""
    async with conn.transaction():
        order = await _lock_order(conn, order_id)
        if order is None:
            return MISSING
        if order[0] == "completed":
            return DUPLICATE
        cur = await conn.execute(
            "INSERT INTO inventory_movements"
            " (order_id, line_no, sku, delta, kind, job_id)"
            " SELECT order_id, line_no, sku, -delta, 'compensate', %s"
            " FROM inventory_movements"
            " WHERE order_id = %s AND kind = 'reserve' ORDER BY line_no"
            " ON CONFLICT DO NOTHING RETURNING sku, delta",
            (job_id, order_id),
        )
        moved = [(str(sku), int(delta)) for sku, delta in await cur.fetchall()]
        await _apply_stock(conn, order_id, moved)
        failed = await _fail(conn, order_id, reason)
        return APPLIED if moved or failed else DUPLICATE


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
