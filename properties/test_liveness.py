"""Liveness: with no fault active, an order placed after the system sat idle
is final within a stated bound.

An idle worker waits in a blocking Redis call; a client whose socket timeout
is shorter than that wait, or a long retry delay after the timeout, shows
here as an order that waits for no reason.
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from properties import harness, report
from properties.model import ExpectedOrder, Model
from system.orders import place_order
from system.schema import CATALOGUE

PROPERTY = "liveness"
LIVENESS_BOUND_S = 8.0
SKUS = sorted(sku for sku, (_, stock) in CATALOGUE.items() if stock > 1000)


@settings(max_examples=min(settings.default.max_examples, 2))
@given(idle_s=st.sampled_from([6.0, 9.0]), lines=st.integers(1, 3))
def test_an_order_after_an_idle_spell_is_final_in_time(
    idle_s: float, lines: int
) -> None:
    h = harness.current()
    h.heal()
    h.reset()
    report.new_example(PROPERTY)

    # Longer than the workers' blocking wait for a job.
    time.sleep(idle_s)
    h.run(
        place_order(
            h.system,
            {
                "order_id": "idle-1",
                "customer_id": "c-1",
                "lines": [{"sku": SKUS[n], "quantity": 1} for n in range(lines)],
            },
        )
    )
    model = Model()
    model.accept(ExpectedOrder("idle-1", lines))
    _, stuck = h.wait_final(model, {"idle-1"}, LIVENESS_BOUND_S)
    if stuck:
        report.failed(PROPERTY, "liveness")
    assert not stuck, (
        f"liveness: after {idle_s:.0f} s idle, an order was not final within "
        f"{LIVENESS_BOUND_S:.0f} s with no fault active: {stuck}"
    )
