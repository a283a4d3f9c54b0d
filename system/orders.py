"""Accepting orders: validation, the PostgreSQL record, then the order's jobs.

`place_order` checks its input before it touches anything. A rejected order
raises one of the `OrderRejected` subclasses and leaves no row and no job
behind. A valid order is stored first (PostgreSQL is the source of truth),
then its flow is enqueued with ids derived from the order id, so submitting
the same order again creates neither a second order nor second jobs.

The payment method is the business-level switch for failures: an order paid
with `DECLINED_PAYMENT` is declined by billing on every attempt, so its flow
fails for good; `FLAKY_PAYMENT` is declined on the first attempt only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from system import ids, jobs
from system.app import System
from system.effects import DECLINED_PAYMENT, FLAKY_PAYMENT
from system.errors import (
    ConflictingResubmission,
    MalformedValue,
    MissingField,
    NonPositiveQuantity,
    PayloadTooLarge,
    UnknownSku,
)

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096
MAX_LINES = 20
MAX_QUANTITY = 10_000
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

PAYMENT_METHODS = ("card", "invoice", "wallet", DECLINED_PAYMENT, FLAKY_PAYMENT)
PRIORITIES = ("general", "critical")
WORKFLOWS = ("flow", "saga")

REQUIRED_FIELDS = ("order_id", "customer_id", "lines")
OPTIONAL_FIELDS = {"payment_method": "card", "priority": "general", "workflow": "flow"}


@dataclass(frozen=True)
class OrderLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class Order:
    """A validated order; only `validate_order` should build one."""

    order_id: str
    customer_id: str
    lines: tuple[OrderLine, ...]
    payment_method: str = "card"
    priority: str = "general"
    workflow: str = "flow"

    @property
    def trace_id(self) -> str:
        return ids.trace_id(self.order_id)

    @property
    def ref(self) -> jobs.OrderRef:
        return jobs.OrderRef(self.order_id, self.trace_id, self.priority, self.workflow)

    @property
    def fingerprint(self) -> str:
        canonical = json.dumps(
            {
                "customer_id": self.customer_id,
                "lines": [[line.sku, line.quantity] for line in self.lines],
                "payment_method": self.payment_method,
                "priority": self.priority,
                "workflow": self.workflow,
            },
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Placement:
    """What `place_order` did: `created` is False for a resubmission."""

    order_id: str
    state: str
    created: bool
    enqueued: bool
    trace_id: str


def _text(raw: Mapping[str, Any], name: str, *, pattern: re.Pattern[str]) -> str:
    value = raw[name]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise MalformedValue(
            f"{name} must be 1-64 letters, digits, '-' or '_', got {value!r:.80}",
            field=name,
        )
    return value


def _choice(raw: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = raw.get(name, OPTIONAL_FIELDS[name])
    if value not in choices:
        raise MalformedValue(
            f"{name} must be one of {', '.join(choices)}, got {value!r:.80}",
            field=name,
        )
    return str(value)


def _line(raw: Any, index: int) -> OrderLine:
    where = f"lines[{index}]"
    if not isinstance(raw, Mapping):
        raise MalformedValue(f"{where} must be an object with sku and quantity")
    for name in ("sku", "quantity"):
        if name not in raw:
            raise MissingField(f"{where}.{name} is required", field=f"{where}.{name}")
    unexpected = sorted(set(raw) - {"sku", "quantity"})
    if unexpected:
        raise MalformedValue(f"{where} has unexpected fields {unexpected}")
    sku, quantity = raw["sku"], raw["quantity"]
    if not isinstance(sku, str) or not 0 < len(sku) <= 64:
        raise MalformedValue(
            f"{where}.sku must be a non-empty string, got {sku!r:.80}",
            field=f"{where}.sku",
        )
    # bool is an int in Python; True items is not a quantity.
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise MalformedValue(
            f"{where}.quantity must be an integer, got {quantity!r:.80}",
            field=f"{where}.quantity",
        )
    if quantity <= 0:
        raise NonPositiveQuantity(
            f"{where}.quantity must be > 0, got {quantity}", field=f"{where}.quantity"
        )
    if quantity > MAX_QUANTITY:
        raise MalformedValue(
            f"{where}.quantity must be <= {MAX_QUANTITY}, got {quantity}",
            field=f"{where}.quantity",
        )
    return OrderLine(sku, quantity)


def validate_order(raw: Any) -> Order:
    """Check an order's shape, types and size; raise an `OrderRejected` kind.

    SKUs are checked against the catalogue by `place_order`, which has the
    database at hand.
    """
    if not isinstance(raw, Mapping):
        raise MalformedValue(f"an order must be an object, got {type(raw).__name__}")
    try:
        size = len(json.dumps(raw, separators=(",", ":")).encode())
    except (TypeError, ValueError) as exc:
        raise MalformedValue(f"the order is not plain JSON data: {exc}") from exc
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"the order is {size} bytes; at most {MAX_PAYLOAD_BYTES} are accepted"
        )

    for name in REQUIRED_FIELDS:
        if name not in raw:
            raise MissingField(f"{name} is required", field=name)
    unexpected = sorted(set(raw) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unexpected:
        raise MalformedValue(f"unexpected fields {unexpected}")

    order_id = _text(raw, "order_id", pattern=ID_PATTERN)
    customer_id = _text(raw, "customer_id", pattern=ID_PATTERN)
    lines = raw["lines"]
    if not isinstance(lines, list | tuple) or not lines:
        raise MalformedValue("lines must be a non-empty list", field="lines")
    if len(lines) > MAX_LINES:
        raise PayloadTooLarge(
            f"the order has {len(lines)} lines; at most {MAX_LINES} are accepted",
            field="lines",
        )
    return Order(
        order_id=order_id,
        customer_id=customer_id,
        lines=tuple(_line(line, i) for i, line in enumerate(lines)),
        payment_method=_choice(raw, "payment_method", PAYMENT_METHODS),
        priority=_choice(raw, "priority", PRIORITIES),
        workflow=_choice(raw, "workflow", WORKFLOWS),
    )


async def place_order(system: System, raw: Any) -> Placement:
    """Validate, store and enqueue one order; idempotent per order id."""
    order = validate_order(raw)
    created, state = await _store(system, order)

    # A resubmission of an unfinished order re-adds the same ids, which
    # restores jobs Redis lost and is a no-op for the ones it still has.
    enqueued = state in ("accepted", "processing")
    if enqueued:
        await jobs.enqueue_order(system.producer, order.ref, "place_order")
    if created:
        logger.info("order %s accepted (%s)", order.order_id, order.workflow)
    else:
        logger.info("order %s resubmitted; it is %s", order.order_id, state)
    return Placement(order.order_id, state, created, enqueued, order.trace_id)


async def _store(system: System, order: Order) -> tuple[bool, str]:
    """Insert the order and its lines in one statement (`bp_place_order`)."""
    async with system.db.connection() as conn:
        cur = await conn.execute(
            "SELECT bp_place_order(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                order.order_id,
                order.customer_id,
                order.payment_method,
                order.priority,
                order.workflow,
                order.trace_id,
                order.fingerprint,
                [line.sku for line in order.lines],
                [line.quantity for line in order.lines],
            ),
        )
        row = await cur.fetchone()
    assert row is not None, "bp_place_order returns one row"
    outcome = str(row[0])

    kind, _, detail = outcome.partition(":")
    if kind == "unknown-sku":
        raise UnknownSku(f"unknown SKU {detail}", field="lines")
    if kind == "conflict":
        raise ConflictingResubmission(
            f"order {order.order_id} was already placed with other content",
            field="order_id",
        )
    if kind == "existing":
        return False, detail
    if kind != "created":
        raise RuntimeError(f"bp_place_order answered {outcome!r}")
    return True, "accepted"
