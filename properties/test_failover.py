"""Failover: orders placed before, during and after a master SIGKILL all end
as the model expects once replay has run, each effect once.

Small and provider-neutral, so it also runs as the failover check of the
containers provider (`--topology containers`).
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from properties import harness, report
from properties.checkers import (
    check_flow_gating,
    check_no_duplicate_effects,
    check_no_lost_jobs,
)
from properties.model import ExpectedOrder, Model
from system.effects import DECLINED_PAYMENT
from system.orders import place_order
from system.schema import CATALOGUE

PROPERTY = "failover"
SETTLE_BOUND_S = 30.0
SKUS = sorted(sku for sku, (_, stock) in CATALOGUE.items() if stock > 1000)


@settings(max_examples=min(settings.default.max_examples, 3))
@given(
    before=st.integers(1, 20),
    during=st.integers(1, 20),
    declined=st.sets(st.integers(0, 39), max_size=5),
)
def test_orders_survive_a_master_sigkill(
    before: int, during: int, declined: set[int]
) -> None:
    h = harness.current()
    h.heal()
    h.reset()
    report.new_example(PROPERTY)
    model = Model()

    def payload(n: int) -> dict[str, object]:
        return {
            "order_id": f"fo-{n}",
            "customer_id": "c-1",
            "lines": [{"sku": SKUS[n % len(SKUS)], "quantity": 1}],
            "payment_method": DECLINED_PAYMENT if n in declined else "card",
        }

    async def place(numbers: range) -> None:
        results = await asyncio.gather(
            *(place_order(h.system, payload(n)) for n in numbers),
            return_exceptions=True,
        )
        for n, result in zip(numbers, results, strict=True):
            expected = ExpectedOrder(f"fo-{n}", 1, n in declined)
            if isinstance(result, BaseException):
                model.uncertain[expected.order_id] = expected
            else:
                model.accept(expected)

    h.run(place(range(before)))
    fault = h.start_fault("kill", "master", {})
    report.fault(PROPERTY, "kill")
    h.run(place(range(before, before + during)))
    h.nemesis.stop(fault)
    h.heal()
    h.replay()

    obs = h.observe()
    for order_id, order in model.uncertain.items():
        if order_id in obs.states:
            model.accept(order)
    _, stuck = h.wait_final(model, set(model.accepted), SETTLE_BOUND_S)
    obs = h.observe()
    try:
        check_no_duplicate_effects(obs)
        check_flow_gating(model, obs)
        check_no_lost_jobs(model, obs)
    except AssertionError as exc:
        report.failed(PROPERTY, str(exc).split(":")[0].split(" (")[0])
        if stuck:
            raise AssertionError(f"{exc}; stuck: {'; '.join(stuck[:5])}") from exc
        raise
