"""Fast checks of the reference system's pure parts: validation, ids, flows."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
import redis

from system import config, ids, jobs
from system.errors import (
    EnqueueFailed,
    MalformedValue,
    MissingField,
    NonPositiveQuantity,
    OrderRejected,
    PayloadTooLarge,
)
from system.orders import MAX_LINES, MAX_PAYLOAD_BYTES, validate_order


def valid_order(**changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "lines": [{"sku": "SKU-APPLE", "quantity": 2}],
    }
    order.update(changes)
    return order


def with_quantity(quantity: Any) -> dict[str, Any]:
    return valid_order(lines=[{"sku": "X", "quantity": quantity}])


def test_valid_order_gets_defaults() -> None:
    order = validate_order(valid_order())
    assert (order.payment_method, order.priority, order.workflow) == (
        "card",
        "general",
        "flow",
    ), order


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        ({"customer_id": "c", "lines": []}, MissingField, r"^order_id is required$"),
        (valid_order(lines=[{"sku": "SKU-APPLE"}]), MissingField, r"quantity"),
        (with_quantity(0), NonPositiveQuantity, "> 0"),
        (with_quantity(-3), NonPositiveQuantity, "-3"),
        (with_quantity("2"), MalformedValue, "integer"),
        (
            with_quantity(True),
            MalformedValue,
            "integer",
        ),
        (valid_order(lines=[{"sku": 7, "quantity": 1}]), MalformedValue, "sku"),
        (valid_order(order_id="has space"), MalformedValue, "order_id"),
        (valid_order(order_id="a:b"), MalformedValue, "order_id"),
        (valid_order(lines=[]), MalformedValue, "non-empty"),
        (valid_order(payment_method="cash"), MalformedValue, "payment_method"),
        (valid_order(workflow="maybe"), MalformedValue, "workflow"),
        (valid_order(extra=1), MalformedValue, "unexpected fields"),
        (valid_order(note="x" * MAX_PAYLOAD_BYTES), PayloadTooLarge, "bytes"),
        (
            valid_order(lines=[{"sku": "X", "quantity": 1}] * (MAX_LINES + 1)),
            PayloadTooLarge,
            "lines",
        ),
        (valid_order(customer_id=float("nan")), MalformedValue, "customer_id"),
        (["not", "a", "mapping"], MalformedValue, "must be an object"),
    ],
)
def test_invalid_order_raises_its_own_error(
    raw: Any, error: type[OrderRejected], match: str
) -> None:
    with pytest.raises(error, match=match):
        validate_order(raw)


def test_rejections_share_one_base_class() -> None:
    with pytest.raises(OrderRejected, match="required"):
        validate_order({})


def test_same_order_gives_same_job_ids_and_trace_id() -> None:
    assert ids.job_ids("o-7") == ids.job_ids("o-7"), "job ids must be deterministic"
    assert ids.trace_id("o-7") == ids.trace_id("o-7"), "trace id must be stable"
    assert ids.job_ids("o-7") != ids.job_ids("o-8"), "different orders, same ids"
    for job_id in vars(ids.job_ids("o-7")).values():
        assert ":" not in job_id, f"job id {job_id} must not contain ':'"


def test_flow_children_fail_their_parent_and_share_the_hash_tag() -> None:
    ref = jobs.OrderRef("o-1", ids.trace_id("o-1"), "critical")
    flow = jobs.order_flow(ref)
    assert flow["name"] == "notify-user", flow
    assert flow["queueName"] == config.QUEUES["critical"], flow
    assert flow["opts"]["jobId"] == ids.job_ids("o-1").notify, flow
    children = {child["name"]: child for child in flow["children"]}
    assert set(children) == {"update-inventory", "record-billing"}, children
    for child in children.values():
        assert child["opts"]["failParentOnFailure"] is True, child
        assert child["opts"]["attempts"] == 3, child
        assert child["queueName"].startswith(config.HASH_TAG + ":"), child
    assert flow["data"] == {
        "order_id": "o-1",
        "metadata": {
            "trace_id": ref.trace_id,
            "step": "notify",
            "source": "place_order",
            "priority": "critical",
            "workflow": "flow",
        },
    }, "payloads must stay thin: ids and metadata only"


def test_default_job_options_follow_the_documented_policy() -> None:
    options = jobs.job_options("j-1")
    assert options == {
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 1000},
        "removeOnComplete": 1000,
        "removeOnFail": 5000,
        "jobId": "j-1",
    }, options


def test_job_options_read_the_seam_at_call_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patched = copy.deepcopy(jobs.DEFAULT_JOB_OPTIONS)
    patched["removeOnComplete"] = True
    monkeypatch.setattr(jobs, "DEFAULT_JOB_OPTIONS", patched)
    assert jobs.job_options("j")["removeOnComplete"] is True, "seam was not used"


def test_unknown_queue_name_is_a_configuration_error() -> None:
    with pytest.raises(Exception, match=r"unknown queue 'nope'"):
        config.queue_name("nope")


def _flaky_add(failures: list[BaseException]) -> tuple[list[int], Any]:
    calls: list[int] = []

    async def add() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "added"

    return calls, add


@pytest.mark.parametrize(
    "failure",
    [
        redis.exceptions.ConnectionError("connection refused"),
        redis.exceptions.TimeoutError("timed out"),
        redis.exceptions.ResponseError("NOREPLICAS Not enough good replicas to write."),
    ],
    ids=["connection", "timeout", "noreplicas"],
)
def test_enqueue_retries_a_failover_error_until_it_succeeds(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    monkeypatch.setattr(jobs, "ENQUEUE_RETRY_DELAY_S", 0.0)
    calls, add = _flaky_add([failure, failure])
    assert asyncio.run(jobs.retry_enqueue("flow", add)) == "added"
    assert len(calls) == 3, f"expected 2 retries, made {len(calls) - 1}"


def test_enqueue_gives_up_after_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "ENQUEUE_RETRY_DELAY_S", 0.01)
    monkeypatch.setattr(jobs, "ENQUEUE_DEADLINE_S", 0.05)
    calls, add = _flaky_add([redis.exceptions.ConnectionError("down")] * 1000)
    with pytest.raises(EnqueueFailed, match=r"^could not enqueue flow in 0 s"):
        asyncio.run(jobs.retry_enqueue("flow", add))
    assert 2 <= len(calls) < 1000, f"{len(calls)} tries"


def test_enqueue_does_not_retry_an_error_in_the_command() -> None:
    calls, add = _flaky_add([redis.exceptions.ResponseError("ERR unknown command")])
    with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
        asyncio.run(jobs.retry_enqueue("flow", add))
    assert len(calls) == 1, f"a command error was retried {len(calls) - 1} times"
