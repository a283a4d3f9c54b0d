"""Isolation: a critical order keeps its latency while the batch queue floods.

Batch reports have a queue and workers of their own; a flood of them must not
delay a critical order's notification beyond a stated bound.
"""

from __future__ import annotations

import asyncio
import time

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from properties import harness, report
from system import jobs
from system.orders import place_order
from system.schema import CATALOGUE

PROPERTY = "isolation"
CRITICAL_BOUND_S = 3.0
SKUS = sorted(sku for sku, (_, stock) in CATALOGUE.items() if stock > 1000)


def _notified_at(h: harness.Harness, order_ids: list[str]) -> dict[str, float]:
    with psycopg.connect(h.topology.postgres_admin_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT order_id, extract(epoch FROM created_at)::float8 FROM notifications"
            " WHERE order_id = ANY(%s)",
            (order_ids,),
        ).fetchall()
    return dict(rows)


@settings(max_examples=min(settings.default.max_examples, 3))
@given(flood=st.integers(500, 3000), critical=st.integers(1, 5))
def test_critical_orders_keep_their_latency_while_batch_floods(
    flood: int, critical: int
) -> None:
    h = harness.current()
    h.heal()
    h.reset()
    report.new_example(PROPERTY)

    async def scenario() -> dict[str, float]:
        # The flood goes in first, so a shared queue would serve it first.
        await asyncio.gather(
            *(
                jobs.enqueue_batch_report(
                    h.system.producer, f"r{n}", rows=10, work_ms=5
                )
                for n in range(flood)
            )
        )
        placed = {}
        for n in range(critical):
            order_id = f"crit-{n}"
            placed[order_id] = time.time()
            await place_order(
                h.system,
                {
                    "order_id": order_id,
                    "customer_id": "c-1",
                    "lines": [{"sku": SKUS[n % len(SKUS)], "quantity": 1}],
                    "priority": "critical",
                },
            )
        return placed

    placed = h.run(scenario())
    deadline = time.monotonic() + CRITICAL_BOUND_S + 5
    notified: dict[str, float] = {}
    while time.monotonic() < deadline and len(notified) < len(placed):
        notified = _notified_at(h, list(placed))
        time.sleep(0.05)

    late = {
        o: round(notified[o] - t, 2) if o in notified else None
        for o, t in placed.items()
        if o not in notified or notified[o] - t > CRITICAL_BOUND_S
    }
    if late:
        report.failed(PROPERTY, "isolation")
    assert not late, (
        f"isolation: with {flood} batch jobs queued, critical orders were notified "
        f"later than {CRITICAL_BOUND_S} s (seconds, None = never): {late}"
    )
