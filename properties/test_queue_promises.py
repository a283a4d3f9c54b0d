"""The queue's own promises: deterministic ids reject duplicates, retries follow
the configured backoff, and noeviction turns memory pressure into a loud
error instead of a silently dropped job."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import RedisError

from properties import harness, report
from properties.checkers import check_no_duplicate_effects, check_no_lost_jobs
from properties.model import ExpectedOrder, Model
from system.effects import FLAKY_PAYMENT
from system.errors import EnqueueFailed
from system.orders import place_order
from system.schema import CATALOGUE

PROPERTY = "queue promises"
SKUS = sorted(sku for sku, (_, stock) in CATALOGUE.items() if stock > 1000)
SETTLE_BOUND_S = 20.0
BACKOFF_FIRST_S = 1.0
BACKOFF_SLACK_S = 0.15
# Past the harness's 2 s lock and the workers' 3 s stalled check.
REDELIVERY_WAIT_S = 6.0

few = settings(max_examples=min(settings.default.max_examples, 6))


def _cart(n: int) -> list[dict[str, Any]]:
    return [{"sku": SKUS[i % len(SKUS)], "quantity": 1} for i in range(n)]


def _repeated_first_attempts(h: harness.Harness) -> list[str]:
    """Job ids whose first attempt was delivered more than once: the job was
    created again after it had already run."""
    with psycopg.connect(h.topology.postgres_admin_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT job_id, count(*) FROM deliveries WHERE attempt = 1"
            " GROUP BY job_id HAVING count(*) > 1"
        ).fetchall()
    return [f"{job_id} ran its first attempt {n} times" for job_id, n in rows]


def _settle(h: harness.Harness, model: Model) -> None:
    _, stuck = h.wait_final(model, set(model.accepted), SETTLE_BOUND_S)
    assert not stuck, f"liveness: orders not final in {SETTLE_BOUND_S} s: {stuck[:5]}"


@few
@given(
    copies=st.integers(2, 4),
    concurrent=st.booleans(),
    lines=st.integers(1, 3),
    flaky=st.booleans(),
)
def test_duplicate_submissions_make_one_set_of_jobs(
    copies: int, concurrent: bool, lines: int, flaky: bool
) -> None:
    h = harness.current()
    h.heal()
    h.reset()
    report.new_example(PROPERTY)
    payload = {
        "order_id": "dup-1",
        "customer_id": "c-1",
        "lines": _cart(lines),
        "payment_method": FLAKY_PAYMENT if flaky else "card",
    }

    # A flaky payment keeps the order processing for the first backoff, so the
    # later copies arrive while some of its jobs have already completed.
    async def submit() -> None:
        if concurrent:
            await asyncio.gather(
                *(place_order(h.system, dict(payload)) for _ in range(copies))
            )
        else:
            for _ in range(copies):
                await place_order(h.system, dict(payload))
                await asyncio.sleep(0.3)

    h.run(submit())
    model = Model()
    model.accept(ExpectedOrder("dup-1", lines))
    _settle(h, model)

    jobs = h.jobs_per_step()
    repeated = {key: n for key, n in jobs.items() if n > 1}
    reruns = _repeated_first_attempts(h)
    if repeated or reruns:
        report.failed(PROPERTY, "deterministic ids")
    assert not repeated, (
        f"deterministic ids: {copies} submissions of order dup-1 left "
        f"{dict(repeated)} jobs in Redis, expected one of each"
    )
    assert not reruns, f"deterministic ids: {'; '.join(reruns)}"


@few
@given(lines=st.integers(1, 3))
def test_retries_follow_the_configured_backoff(lines: int) -> None:
    h = harness.current()
    h.heal()
    h.reset()
    report.new_example(PROPERTY)
    h.run(
        place_order(
            h.system,
            {
                "order_id": "flaky-1",
                "customer_id": "c-1",
                "lines": _cart(lines),
                "payment_method": FLAKY_PAYMENT,
            },
        )
    )
    model = Model()
    model.accept(ExpectedOrder("flaky-1", lines))
    _settle(h, model)

    with psycopg.connect(h.topology.postgres_admin_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT attempt, extract(epoch FROM delivered_at)::float8 FROM deliveries"
            " WHERE job_name = 'record-billing' ORDER BY delivered_at"
        ).fetchall()
    attempts = [a for a, _ in rows]
    assert attempts[:2] == [1, 2], (
        f"backoff: billing of flaky-1 delivered as attempts {attempts}, expected 1, 2"
    )
    gap = rows[1][1] - rows[0][1]
    if gap < BACKOFF_FIRST_S - BACKOFF_SLACK_S:
        report.failed(PROPERTY, "backoff")
    assert gap >= BACKOFF_FIRST_S - BACKOFF_SLACK_S, (
        f"backoff: the retry of flaky-1's billing came {gap:.2f} s after the "
        f"first attempt, expected at least {BACKOFF_FIRST_S} s"
    )


@settings(max_examples=min(settings.default.max_examples, 3))
@given(headroom_kb=st.integers(64, 256))
def test_memory_pressure_fails_loudly_and_drops_no_job(headroom_kb: int) -> None:
    h = harness.current()
    h.heal()
    h.reset()
    report.new_example(PROPERTY)
    master = h.topology.current_master()
    admin = h.topology.admin(master)
    used = int(admin.info("memory")["used_memory"])
    limit = used + headroom_kb * 1024
    before = admin.config_get("maxmemory")["maxmemory"]

    # Keep the workers from finishing jobs, so every job stays in Redis.
    for worker in h.pool:
        worker.pause()
    accepted: list[str] = []
    refused: list[str] = []
    try:
        admin.config_set("maxmemory", limit)
        for n in range(2000):
            order_id = f"mem-{n}"
            try:
                h.run(
                    place_order(
                        h.system,
                        {"order_id": order_id, "customer_id": "c-1", "lines": _cart(3)},
                    )
                )
            except (EnqueueFailed, RedisError) as exc:
                refused.append(f"{order_id}: {type(exc).__name__}: {exc}"[:200])
                break
            accepted.append(order_id)
        jobs = h.jobs_per_step()
    finally:
        admin.config_set("maxmemory", before)
        admin.close()
        for worker in h.pool:
            worker.resume()

    dropped = sorted(
        f"{o} {n}"
        for o in accepted
        for n in ("notify-user", "update-inventory", "record-billing")
        if jobs.get((o, n), 0) != 1
    )
    problems = []
    if not refused:
        problems.append(
            f"{len(accepted)} orders accepted under a {headroom_kb} KB memory "
            "headroom and no add failed"
        )
    if dropped:
        problems.append(
            f"jobs of accepted orders missing from Redis: {dropped[:10]} "
            f"({len(dropped)} in all)"
        )
    if problems:
        report.failed(PROPERTY, "noeviction")

    # One assertion for both symptoms of eviction, so the failure is stable.
    assert not problems, "noeviction: " + "; ".join(problems)
    model = Model()
    for order_id in accepted:
        model.accept(ExpectedOrder(order_id, 3))
    h.replay()
    _settle(h, model)


@few
@given(lines=st.integers(1, 3), replays=st.integers(1, 3))
def test_replay_adds_no_second_set_of_jobs(lines: int, replays: int) -> None:
    h = harness.current()
    h.heal()
    h.reset()
    report.new_example(PROPERTY)

    # A flaky payment keeps the order unfinished through its first backoff,
    # so replay meets an order whose jobs are all still in Redis.
    h.run(
        place_order(
            h.system,
            {
                "order_id": "replayed-1",
                "customer_id": "c-1",
                "lines": _cart(lines),
                "payment_method": FLAKY_PAYMENT,
            },
        )
    )
    for _ in range(replays):
        h.replay()
    model = Model()
    model.accept(ExpectedOrder("replayed-1", lines))
    _settle(h, model)

    repeated = {key: n for key, n in h.jobs_per_step().items() if n > 1}
    if repeated:
        report.failed(PROPERTY, "deterministic ids")
    assert not repeated, (
        f"deterministic ids: {replays} replays of unfinished order replayed-1 left "
        f"{repeated} jobs in Redis, expected one of each"
    )


@settings(max_examples=min(settings.default.max_examples, 4))
@given(lines=st.integers(1, 3), worker=st.integers(0, 1))
def test_redelivery_after_lock_expiry_changes_nothing(lines: int, worker: int) -> None:
    h = harness.current()
    h.heal()
    h.reset()
    report.new_example(PROPERTY)
    billing = h.pool.for_queue("billing")[worker]

    # Freeze the billing worker while it holds the order's job, past its lock
    # and the stalled check: another worker gets the job, and the frozen one
    # finishes it too once thawed. A real second delivery.
    h.run(
        place_order(
            h.system,
            {"order_id": "stall-1", "customer_id": "c-1", "lines": _cart(lines)},
        )
    )
    fault = h.start_fault(
        "pause_worker", billing.name, {"wait_active": True, "active_timeout": 3.0}
    )
    time.sleep(REDELIVERY_WAIT_S)
    h.nemesis.stop(fault)
    model = Model()
    model.accept(ExpectedOrder("stall-1", lines))
    _settle(h, model)
    time.sleep(0.5)

    obs = h.observe()
    try:
        check_no_duplicate_effects(obs)
        check_no_lost_jobs(model, obs)
    except AssertionError as exc:
        report.failed(PROPERTY, str(exc).split(":")[0].split(" (")[0])
        raise
