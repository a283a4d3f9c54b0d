"""What the reference system should have done, and what it was seen to do.

The `Model` is the state machine's memory of every order it placed: accepted
or rejected, how many lines, whether billing must fail for good. An
`Observation` is a snapshot of what PostgreSQL holds afterwards: each order's
state and every effect row with the time it committed. The checkers in
`properties.checkers` compare the two; both are plain data so that the
checkers can be tested without any server.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

FinalState = Literal["completed", "failed"]
FINAL_STATES: frozenset[str] = frozenset({"completed", "failed"})


@dataclass(frozen=True)
class ExpectedOrder:
    """An order the system accepted, and how it must end."""

    order_id: str
    lines: int
    declined: bool = False

    @property
    def final_state(self) -> FinalState:
        return "failed" if self.declined else "completed"


@dataclass
class Model:
    """Every order placed in one run of the state machine."""

    accepted: dict[str, ExpectedOrder] = field(default_factory=dict)
    # Placed, but the answer was lost (a timeout, a failover): stored or not.
    uncertain: dict[str, ExpectedOrder] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    submissions: Counter[str] = field(default_factory=Counter)

    def accept(self, order: ExpectedOrder) -> None:
        known = self.accepted.get(order.order_id)
        if known is not None and known != order:
            raise ValueError(
                f"order {order.order_id} accepted twice with different contents: "
                f"{known} then {order}"
            )
        self.accepted[order.order_id] = order
        self.submissions[order.order_id] += 1

    def reject(self, description: str, error: str) -> None:
        self.rejected.append((description, error))


@dataclass(frozen=True)
class Effect:
    """One effect row: `kind` is inventory, billing or notification."""

    kind: Literal["inventory", "billing", "notification", "compensation"]
    order_id: str
    key: str
    at: float


@dataclass(frozen=True)
class Observation:
    """What PostgreSQL held at one moment: order states and effect rows."""

    states: dict[str, str]
    effects: tuple[Effect, ...]
    taken_at: float = 0.0

    def of(self, kind: str, order_id: str) -> list[Effect]:
        return [e for e in self.effects if e.kind == kind and e.order_id == order_id]

    def unfinished(self, order_ids: set[str] | None = None) -> set[str]:
        ids = set(self.states) if order_ids is None else order_ids
        return {o for o in ids if self.states.get(o) not in FINAL_STATES}
