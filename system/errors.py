"""The reference system's own errors: rejected orders and business failures.

An order that fails validation raises a subclass of `OrderRejected` before
anything is written or enqueued; callers can catch the base class or the one
kind they care about. Business failures inside a worker (`PaymentDeclined`,
`InsufficientStock`) make a job fail; `EnqueueFailed` means Redis stayed
unreachable for longer than the system is willing to wait.
"""

from __future__ import annotations


class SystemConfigError(RuntimeError):
    """The system was started with a missing or wrong setting."""


class OrderRejected(ValueError):
    """An order was refused at the door; nothing was stored or enqueued."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class MissingField(OrderRejected):
    """A required field is absent."""


class MalformedValue(OrderRejected):
    """A field has the wrong type or format."""


class NonPositiveQuantity(OrderRejected):
    """An order line asks for zero or fewer items."""


class UnknownSku(OrderRejected):
    """An order line names a SKU the catalogue does not have."""


class PayloadTooLarge(OrderRejected):
    """The order is bigger than the system accepts (bytes or lines)."""


class ConflictingResubmission(OrderRejected):
    """An order id was submitted again with different content."""


class EnqueueFailed(RuntimeError):
    """Adding jobs kept failing with connection errors past the retry bound."""


class PaymentDeclined(Exception):
    """The payment method was declined; billing fails on this attempt."""


class InsufficientStock(Exception):
    """Not enough stock to reserve an order's lines."""
