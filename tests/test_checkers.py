"""The invariants' checkers catch what they claim to, on hand-built observations."""

from __future__ import annotations

import pytest

from properties.checkers import (
    check_flow_gating,
    check_no_duplicate_effects,
    check_no_lost_jobs,
    find_not_final,
    total_queue,
)
from properties.model import Effect, ExpectedOrder, Model, Observation


def completed(order_id: str, lines: int = 2, t: float = 1.0) -> list[Effect]:
    effects = [Effect("inventory", order_id, str(n), t) for n in range(lines)]
    effects.append(Effect("billing", order_id, "", t))
    effects.append(Effect("notification", order_id, "", t + 1))
    return effects


def model_of(*orders: ExpectedOrder) -> Model:
    model = Model()
    for order in orders:
        model.accept(order)
    return model


def test_clean_run_passes_every_check() -> None:
    model = model_of(ExpectedOrder("o1", 2), ExpectedOrder("o2", 1, declined=True))
    obs = Observation(
        {"o1": "completed", "o2": "failed"},
        (*completed("o1"), Effect("inventory", "o2", "0", 1.0)),
    )

    check_no_duplicate_effects(obs)
    check_flow_gating(model, obs)
    report = check_no_lost_jobs(model, obs, unfinished_before_replay={"o1"})
    assert report.valid and report.recovered == {"o1"}, report.summary()
    assert find_not_final(model, obs) == []


def test_second_billing_entry_is_a_duplicate_effect() -> None:
    obs = Observation(
        {"o1": "completed"}, (*completed("o1"), Effect("billing", "o1", "", 2))
    )

    with pytest.raises(
        AssertionError, match=r"^duplicate effects: order o1: 2 billing"
    ):
        check_no_duplicate_effects(obs)


def test_second_movement_for_one_line_is_a_duplicate_effect() -> None:
    obs = Observation(
        {"o1": "completed"}, (*completed("o1"), Effect("inventory", "o1", "1", 2))
    )

    with pytest.raises(AssertionError, match=r"2 inventory effects line 1, expected 1"):
        check_no_duplicate_effects(obs)


def test_notification_before_billing_breaks_gating() -> None:
    model = model_of(ExpectedOrder("o1", 1))
    obs = Observation(
        {"o1": "completed"},
        (
            Effect("inventory", "o1", "0", 1.0),
            Effect("notification", "o1", "", 2.0),
            Effect("billing", "o1", "", 3.0),
        ),
    )

    with pytest.raises(AssertionError, match="notified before billing committed"):
        check_flow_gating(model, obs)


def test_notification_without_all_lines_breaks_gating() -> None:
    model = model_of(ExpectedOrder("o1", 3))
    obs = Observation({"o1": "processing"}, tuple(completed("o1", lines=2)))

    with pytest.raises(AssertionError, match="notified with 2 of 3 inventory"):
        check_flow_gating(model, obs)


def test_notification_of_declined_order_breaks_gating() -> None:
    model = model_of(ExpectedOrder("o1", 1, declined=True))
    obs = Observation({"o1": "failed"}, (Effect("notification", "o1", "", 1.0),))

    with pytest.raises(AssertionError, match="billing failed for good"):
        check_flow_gating(model, obs)


def test_unfinished_order_is_lost() -> None:
    model = model_of(ExpectedOrder("o1", 2), ExpectedOrder("o2", 1))
    obs = Observation({"o1": "completed", "o2": "processing"}, tuple(completed("o1")))

    report = total_queue(model, obs)

    assert report.lost == {"o2"} and not report.valid
    with pytest.raises(AssertionError, match=r"order o2: still processing"):
        check_no_lost_jobs(model, obs)


def test_order_completed_without_notification_is_lost() -> None:
    model = model_of(ExpectedOrder("o1", 1))
    effects = tuple(e for e in completed("o1", 1) if e.kind != "notification")
    obs = Observation({"o1": "completed"}, effects)

    with pytest.raises(AssertionError, match="0 notification effects"):
        check_no_lost_jobs(model, obs)


def test_order_never_accepted_is_unexpected() -> None:
    model = model_of(ExpectedOrder("o1", 2))
    obs = Observation({"o1": "completed", "ghost": "completed"}, tuple(completed("o1")))

    report = total_queue(model, obs)

    assert report.unexpected == {"ghost"}, report.summary()
    assert not report.valid


def test_declined_order_that_completed_is_wrong() -> None:
    model = model_of(ExpectedOrder("o1", 2, declined=True))
    obs = Observation({"o1": "completed"}, tuple(completed("o1")))

    assert find_not_final(model, obs) == ["order o1: ended completed, expected failed"]


def test_model_refuses_one_order_id_with_two_contents() -> None:
    model = model_of(ExpectedOrder("o1", 2))

    with pytest.raises(ValueError, match="accepted twice with different contents"):
        model.accept(ExpectedOrder("o1", 3))
