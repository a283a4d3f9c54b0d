"""The invariants, as pure functions of the model and an observation.

Each `find_*` returns the problems it sees as sentences naming the order, the
effect and the counts; each `check_*` raises `AssertionError` with them. No
server is needed: the state machine hands in an `Observation` it read from
PostgreSQL, and the unit tests hand in ones they built.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from properties.model import FINAL_STATES, Model, Observation

MAX_LISTED = 10


def _fail(invariant: str, problems: list[str]) -> None:
    if problems:
        shown = problems[:MAX_LISTED]
        more = len(problems) - len(shown)
        tail = f"; and {more} more" if more else ""
        raise AssertionError(f"{invariant}: " + "; ".join(shown) + tail)


# -- no duplicate effects ------------------------------------------------------


def find_duplicate_effects(obs: Observation) -> list[str]:
    """At most one billing entry and one notification per order, and at most one
    inventory reservation per order line."""
    counts = Counter((e.kind, e.order_id, e.key) for e in obs.effects)
    problems = []
    for (kind, order_id, key), n in sorted(counts.items()):
        if n > 1:
            where = f" line {key}" if kind in ("inventory", "compensation") else ""
            problems.append(f"order {order_id}: {n} {kind} effects{where}, expected 1")
    return problems


def check_no_duplicate_effects(obs: Observation) -> None:
    _fail("duplicate effects", find_duplicate_effects(obs))


# -- flow gating -----------------------------------------------------------------


def find_gating_violations(model: Model, obs: Observation) -> list[str]:
    """A notification exists only after its order's inventory and billing effects
    committed, and never for an order whose billing failed for good."""
    problems = []
    for note in (e for e in obs.effects if e.kind == "notification"):
        order = model.accepted.get(note.order_id)
        if order is not None and order.declined:
            problems.append(
                f"order {note.order_id}: notified although its billing failed for good"
            )
            continue
        billing = obs.of("billing", note.order_id)
        inventory = obs.of("inventory", note.order_id)
        if not billing:
            problems.append(f"order {note.order_id}: notified with no billing entry")
        elif min(e.at for e in billing) > note.at:
            problems.append(f"order {note.order_id}: notified before billing committed")
        lines = order.lines if order is not None else len({e.key for e in inventory})
        reserved = {e.key for e in inventory}
        if len(reserved) < lines:
            problems.append(
                f"order {note.order_id}: notified with {len(reserved)} of {lines} "
                "inventory movements"
            )
        elif inventory and min(e.at for e in inventory) > note.at:
            problems.append(
                f"order {note.order_id}: notified before inventory committed"
            )
    for order_id, state in sorted(obs.states.items()):
        if state == "failed" and obs.of("notification", order_id):
            problems.append(f"order {order_id}: failed but has a notification")
    return problems


def check_flow_gating(model: Model, obs: Observation) -> None:
    _fail("flow gating", find_gating_violations(model, obs))


# -- no lost jobs after replay (a total-queue check) ---------------------------------


@dataclass(frozen=True)
class QueueReport:
    """Jepsen-style accounting of accepted orders after faults, replay and settle.

    lost: accepted, but not final or final in the wrong state / without its
    effects. duplicated: some effect applied more than once. unexpected: state
    or effects for an order the model never accepted. recovered: unfinished
    before replay and correctly final after it.
    """

    accepted: int
    ok: frozenset[str]
    lost: frozenset[str]
    duplicated: frozenset[str]
    unexpected: frozenset[str]
    recovered: frozenset[str]
    reasons: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def summary(self) -> str:
        return (
            f"accepted {self.accepted}, ok {len(self.ok)}, lost {len(self.lost)}, "
            f"duplicated {len(self.duplicated)}, unexpected {len(self.unexpected)}, "
            f"recovered {len(self.recovered)}"
        )


def _wrong_final(model: Model, obs: Observation, order_id: str) -> str | None:
    expected = model.accepted[order_id]
    state = obs.states.get(order_id)
    if state is None:
        return f"order {order_id}: accepted but absent from PostgreSQL"
    if state not in FINAL_STATES:
        return f"order {order_id}: still {state}, expected {expected.final_state}"
    if state != expected.final_state:
        return f"order {order_id}: ended {state}, expected {expected.final_state}"
    if state == "completed":
        billing = len(obs.of("billing", order_id))
        notes = len(obs.of("notification", order_id))
        lines = len({e.key for e in obs.of("inventory", order_id)})
        if billing < 1 or notes < 1 or lines < expected.lines:
            return (
                f"order {order_id}: completed with {billing} billing, {lines} of "
                f"{expected.lines} inventory, {notes} notification effects"
            )
    return None


def total_queue(
    model: Model, obs: Observation, unfinished_before_replay: set[str] | None = None
) -> QueueReport:
    reasons = []
    lost = set()
    for order_id in model.accepted:
        reason = _wrong_final(model, obs, order_id)
        if reason is not None:
            lost.add(order_id)
            reasons.append(reason)

    counts = Counter((e.kind, e.order_id, e.key) for e in obs.effects)
    duplicated = {order_id for (_, order_id, _), n in counts.items() if n > 1}
    reasons += find_duplicate_effects(obs)

    seen = set(obs.states) | {e.order_id for e in obs.effects}
    unexpected = seen - set(model.accepted)
    reasons += [
        f"order {o}: in PostgreSQL but never accepted" for o in sorted(unexpected)
    ]

    ok = set(model.accepted) - lost - duplicated
    recovered = (unfinished_before_replay or set()) & ok
    return QueueReport(
        accepted=len(model.accepted),
        ok=frozenset(ok),
        lost=frozenset(lost),
        duplicated=frozenset(duplicated),
        unexpected=frozenset(unexpected),
        recovered=frozenset(recovered),
        reasons=tuple(reasons),
    )


def check_no_lost_jobs(
    model: Model, obs: Observation, unfinished_before_replay: set[str] | None = None
) -> QueueReport:
    report = total_queue(model, obs, unfinished_before_replay)
    if not report.valid:
        title = f"lost or duplicated orders after replay ({report.summary()})"
        _fail(title, list(report.reasons))
    return report


# -- liveness ------------------------------------------------------------------------


def find_not_final(model: Model, obs: Observation) -> list[str]:
    """Accepted orders that are not (correctly) final."""
    return [
        reason
        for order_id in sorted(model.accepted)
        if (reason := _wrong_final(model, obs, order_id)) is not None
    ]
