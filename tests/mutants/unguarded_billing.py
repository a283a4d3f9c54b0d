"""The idempotency check outside the effect's transaction, and no unique
constraint: billing checks for an entry, calls a slow payment gateway, and
inserts in a separate transaction, so two deliveries of one job both charge."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from system import effects
from system.errors import PaymentDeclined

TARGETS = [
    "properties/test_queue_promises.py::test_redelivery_after_lock_expiry_changes_nothing"
]

GATEWAY_S = 0.5


async def _record_billing(
    conn: psycopg.AsyncConnection, order_id: str, job_id: str, attempt: int
) -> effects.Outcome:
    cur = await conn.execute(
        "SELECT count(*) FROM billing_entries WHERE order_id = %s", (order_id,)
    )
    row = await cur.fetchone()
    if row is not None and row[0] > 0:
        return effects.DUPLICATE
    await asyncio.sleep(GATEWAY_S)
    cur = await conn.execute(
        "SELECT payment_method, total_cents FROM orders WHERE order_id = %s",
        (order_id,),
    )
    order = await cur.fetchone()
    if order is None:
        return effects.MISSING
    if order[0] == effects.DECLINED_PAYMENT or (
        order[0] == effects.FLAKY_PAYMENT and attempt == 1
    ):
        raise PaymentDeclined(f"order {order_id}: payment declined")
    await conn.execute(
        "INSERT INTO billing_entries (order_id, amount_cents, job_id)"
        " VALUES (%s, %s, %s)",
        (order_id, order[1], job_id),
    )
    return effects.APPLIED


def configure(topology: Any) -> None:
    with psycopg.connect(topology.postgres_admin_dsn, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE IF EXISTS billing_entries"
            " DROP CONSTRAINT IF EXISTS billing_entries_once"
        )


effects.record_billing = _record_billing
