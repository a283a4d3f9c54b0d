"""The reference system on a real topology: orders, failures, replay, archive.

One worker per pipeline queue serves the whole module; every test resets the
system's tables and queues first, so the tests share the session topology and
the workers without seeing each other's orders.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chaos.topology import Topology
from chaos.workers import WorkerPool, spawn_worker
from system import archive, ids, jobs, replay, reset, status
from system.app import System
from system.errors import (
    ConflictingResubmission,
    EnqueueFailed,
    MalformedValue,
    MissingField,
    NonPositiveQuantity,
    OrderRejected,
    PayloadTooLarge,
    UnknownSku,
)
from system.orders import DECLINED_PAYMENT, MAX_PAYLOAD_BYTES, place_order

pytestmark = pytest.mark.slow

T = TypeVar("T")
SETTLE_TIMEOUT_S = 60.0
FINAL = ("completed", "failed")


@pytest.fixture(scope="module")
def workers(topology: Topology) -> Iterator[WorkerPool]:
    with WorkerPool(topology) as pool:
        yield pool


def run(topology: Topology, scenario: Callable[[System], Awaitable[T]]) -> T:
    """Run `scenario` against a freshly reset system."""

    async def main() -> T:
        async with System(topology.redis_settings(), topology.postgres_dsn) as system:
            await reset.reset(system)
            return await scenario(system)

    return asyncio.run(main())


def order(order_id: str, **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "order_id": order_id,
        "customer_id": "cust-1",
        "lines": [
            {"sku": "SKU-APPLE", "quantity": 2},
            {"sku": "SKU-EGGS", "quantity": 1},
        ],
    }
    raw.update(changes)
    return raw


async def scalar(system: System, sql: str, *args: Any) -> Any:
    async with system.db.connection() as conn:
        cur = await conn.execute(sql, args)
        row = await cur.fetchone()
    assert row is not None, sql
    return row[0]


async def rows(system: System, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with system.db.connection() as conn:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall())


async def wait_settled(
    system: System, order_ids: list[str], timeout: float = SETTLE_TIMEOUT_S
) -> dict[str, str]:
    """Every order's state once all are completed or failed; fail on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        states = dict(
            await rows(
                system,
                "SELECT order_id, state FROM orders WHERE order_id = ANY(%s)",
                order_ids,
            )
        )
        if all(states.get(o) in FINAL for o in order_ids):
            return states
        if time.monotonic() > deadline:
            stuck = [
                o for o in order_ids if states.get(o) not in ("completed", "failed")
            ]
            details = [(await status.order_status(system, o) or o) for o in stuck[:5]]
            raise AssertionError(
                f"{len(stuck)} of {len(order_ids)} orders unfinished after "
                f"{timeout:.0f} s: {details}"
            )
        await asyncio.sleep(0.1)


async def effect_counts(system: System) -> dict[str, dict[str, int]]:
    """Per effect table, how many rows each order has."""
    found: dict[str, dict[str, int]] = {}
    for table, where in (
        ("billing_entries", ""),
        ("notifications", ""),
        ("inventory_movements", " WHERE kind = 'reserve'"),
    ):
        found[table] = dict(
            await rows(
                system,
                f"SELECT order_id, count(*) FROM {table}{where} GROUP BY order_id",
            )
        )
    return found


def assert_each_effect_once(
    counts: dict[str, dict[str, int]], order_ids: list[str], lines: int
) -> None:
    expected = {"billing_entries": 1, "notifications": 1, "inventory_movements": lines}
    for table, want in expected.items():
        wrong = {
            o: counts[table].get(o, 0)
            for o in order_ids
            if counts[table].get(o, 0) != want
        }
        assert not wrong, f"{table}: expected {want} per order, found {wrong}"


async def redis_keys(system: System, order_id: str) -> list[str]:
    found = []
    job = ids.job_ids(order_id)
    for queue in ("inventory", "billing", "general", "critical"):
        q = system.producer.queue(queue)
        for job_id in (job.notify, job.inventory, job.billing):
            if await q.client.exists(q.toKey(job_id)):
                found.append(f"{queue}/{job_id}")
    return found


# -- accepting orders --------------------------------------------------------


def test_two_hundred_valid_orders_complete_with_each_effect_once(
    healthy_topology: Topology, workers: WorkerPool
) -> None:
    async def scenario(system: System) -> None:
        order_ids = [f"ok-{n}" for n in range(200)]
        slots = asyncio.Semaphore(20)

        async def submit(order_id: str) -> None:
            async with slots:
                placed = await place_order(system, order(order_id))
            assert placed.created and placed.state == "accepted", placed

        await asyncio.gather(*(submit(o) for o in order_ids))
        states = await wait_settled(system, order_ids)
        failed = [o for o, s in states.items() if s != "completed"]
        assert not failed, f"orders that did not complete: {failed}"
        assert_each_effect_once(await effect_counts(system), order_ids, lines=2)

        on_hand = dict(
            await rows(system, "SELECT sku, initial_on_hand - on_hand FROM stock")
        )
        assert (on_hand["SKU-APPLE"], on_hand["SKU-EGGS"]) == (400, 200), on_hand

    run(healthy_topology, scenario)


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (
            order("bad-sku", lines=[{"sku": "SKU-NOPE", "quantity": 1}]),
            UnknownSku,
            "SKU-NOPE",
        ),
        (
            order("bad-qty", lines=[{"sku": "SKU-APPLE", "quantity": 0}]),
            NonPositiveQuantity,
            "> 0",
        ),
        ({"order_id": "bad-missing", "lines": []}, MissingField, "customer_id"),
        (
            order(
                "bad-big",
                customer_id="c" * 10,
                lines=[{"sku": "SKU-APPLE", "quantity": 1}] * 3,
                note="x" * MAX_PAYLOAD_BYTES,
            ),
            PayloadTooLarge,
            "bytes",
        ),
        (
            order("bad-value", lines=[{"sku": "SKU-APPLE", "quantity": "many"}]),
            MalformedValue,
            "integer",
        ),
    ],
    ids=[
        "unknown-sku",
        "non-positive-quantity",
        "missing-field",
        "oversized",
        "malformed-value",
    ],
)
def test_invalid_order_is_rejected_and_nothing_is_stored_or_enqueued(
    healthy_topology: Topology,
    workers: WorkerPool,
    raw: dict[str, Any],
    error: type[OrderRejected],
    match: str,
) -> None:
    async def scenario(system: System) -> None:
        with pytest.raises(error, match=match):
            await place_order(system, raw)
        order_id = raw["order_id"]
        stored = await scalar(
            system,
            "SELECT (SELECT count(*) FROM orders WHERE order_id = %s)"
            " + (SELECT count(*) FROM order_lines WHERE order_id = %s)",
            order_id,
            order_id,
        )
        assert stored == 0, f"rejected order {order_id} left {stored} rows"
        keys = await redis_keys(system, order_id)
        assert not keys, f"rejected order {order_id} left jobs {keys}"

    run(healthy_topology, scenario)


def test_resubmitting_an_order_creates_no_second_order_or_jobs(
    healthy_topology: Topology, workers: WorkerPool
) -> None:
    async def scenario(system: System) -> None:
        first = await place_order(system, order("again"))
        second = await place_order(system, order("again"))
        assert first.created and not second.created, (first, second)
        await wait_settled(system, ["again"])
        third = await place_order(system, order("again"))
        assert (third.created, third.state, third.enqueued) == (
            False,
            "completed",
            False,
        ), third
        with pytest.raises(ConflictingResubmission, match="other content"):
            await place_order(system, order("again", payment_method="invoice"))

        assert await scalar(system, "SELECT count(*) FROM orders") == 1
        deliveries = await rows(
            system, "SELECT job_id, count(*) FROM deliveries GROUP BY job_id"
        )
        assert sorted(deliveries) == sorted(
            (job_id, 1) for job_id in vars(ids.job_ids("again")).values()
        ), f"each job must run once, got {deliveries}"

    run(healthy_topology, scenario)


# -- failures ----------------------------------------------------------------


def test_declined_billing_fails_the_order_and_the_parent_never_runs(
    healthy_topology: Topology, workers: WorkerPool
) -> None:
    async def scenario(system: System) -> None:
        await place_order(system, order("declined", payment_method=DECLINED_PAYMENT))
        states = await wait_settled(system, ["declined"])
        assert states == {"declined": "failed"}, states

        job = ids.job_ids("declined")
        runs = dict(
            await rows(
                system, "SELECT job_id, count(*) FROM deliveries GROUP BY job_id"
            )
        )
        assert runs.get(job.billing) == 3, f"billing must be tried 3 times: {runs}"
        assert job.notify not in runs, f"the parent ran although billing failed: {runs}"
        counts = await effect_counts(system)
        assert not counts["notifications"], counts
        assert not counts["billing_entries"], counts

        where = await status.order_status(system, "declined")
        assert where is not None
        assert where.job("notify-user").state == "failed", where.describe()
        assert where.job("record-billing").state == "failed", where.describe()
        reason = await scalar(
            system, "SELECT failure_reason FROM orders WHERE order_id = 'declined'"
        )
        assert "declined" in reason, reason

    run(healthy_topology, scenario)


def test_saga_compensates_the_stock_when_billing_fails_for_good(
    healthy_topology: Topology, workers: WorkerPool
) -> None:
    async def scenario(system: System) -> None:
        await place_order(
            system, order("saga-ok", workflow="saga", priority="critical")
        )
        await place_order(
            system,
            order("saga-no", workflow="saga", payment_method=DECLINED_PAYMENT),
        )
        states = await wait_settled(system, ["saga-ok", "saga-no"])
        assert states == {"saga-ok": "completed", "saga-no": "failed"}, states

        moves = await rows(
            system,
            "SELECT order_id, kind, sum(delta) FROM inventory_movements"
            " GROUP BY order_id, kind ORDER BY order_id, kind",
        )
        assert moves == [
            ("saga-no", "compensate", 3),
            ("saga-no", "reserve", -3),
            ("saga-ok", "reserve", -3),
        ], moves
        taken = dict(
            await rows(system, "SELECT sku, initial_on_hand - on_hand FROM stock")
        )
        assert (taken["SKU-APPLE"], taken["SKU-EGGS"]) == (2, 1), (
            f"only the completed saga may keep its stock: {taken}"
        )
        notified = await rows(system, "SELECT order_id, channel FROM notifications")
        assert notified == [("saga-ok", "critical")], notified

    run(healthy_topology, scenario)


# -- replay, archive, throttle --------------------------------------------------


def test_replay_after_a_flush_completes_every_order_and_twice_changes_nothing(
    healthy_topology: Topology, workers: WorkerPool
) -> None:
    order_ids = [f"lost-{n}" for n in range(40)]

    async def place(system: System) -> None:
        for order_id in order_ids:
            await place_order(system, order(order_id))

    async def recover(system: System) -> None:
        pending = await status.unfinished_orders(system)
        missing = [
            s.order_id for s in pending if {j.state for j in s.jobs} == {"missing"}
        ]
        assert len(missing) == len(order_ids), (
            f"after the flush every job should be missing: {len(missing)} are"
        )

        first = await replay.replay(system)
        second = await replay.replay(system)
        assert len(first.replayed) == len(order_ids), first
        await wait_settled(system, order_ids)
        assert_each_effect_once(await effect_counts(system), order_ids, lines=2)
        duplicates = await rows(
            system,
            "SELECT job_id, count(*) FROM deliveries GROUP BY job_id"
            " HAVING count(*) > 1",
        )
        assert not duplicates, (
            f"replaying twice ran jobs twice ({second}): {duplicates}"
        )

        before = await scalar(system, "SELECT count(*) FROM deliveries")
        third = await replay.replay(system)
        await asyncio.sleep(0.5)
        after = await scalar(system, "SELECT count(*) FROM deliveries")
        assert third.examined == 0 and after == before, (third, before, after)

    # Workers frozen, so the jobs are still waiting when Redis loses them.
    for worker in workers:
        worker.pause()
    try:
        run(healthy_topology, place)
        healthy_topology.admin(healthy_topology.current_master()).flushall()
    finally:
        for worker in workers:
            worker.resume()

    async def scenario(system: System) -> None:
        await recover(system)

    asyncio.run(_without_reset(healthy_topology, scenario))


async def _without_reset(
    topology: Topology, scenario: Callable[[System], Awaitable[None]]
) -> None:
    async with System(topology.redis_settings(), topology.postgres_dsn) as system:
        await scenario(system)


def test_two_archivers_move_each_finished_job_exactly_once(
    healthy_topology: Topology, workers: WorkerPool
) -> None:
    async def scenario(system: System) -> None:
        order_ids = [f"arch-{n}" for n in range(30)]
        for order_id in order_ids:
            await place_order(system, order(order_id))
        await place_order(system, order("arch-no", payment_method=DECLINED_PAYMENT))
        await wait_settled(system, [*order_ids, "arch-no"])

        finished = set()
        for queue in ("inventory", "billing", "general"):
            q = system.producer.queue(queue)
            for state in ("completed", "failed"):
                for job_id in await q.client.zrange(q.keys[state], 0, -1):
                    finished.add((q.name, job_id))
        assert len(finished) == 3 * 31, f"expected 93 finished jobs: {len(finished)}"

        reports = await asyncio.gather(
            archive.archive(system, name="left"), archive.archive(system, name="right")
        )
        archived = await rows(system, "SELECT queue, job_id FROM job_archive")
        assert len(archived) == len(set(archived)), "a job was archived twice"
        assert set(archived) == finished, (
            f"lost {finished - set(archived)}, extra {set(archived) - finished}"
        )
        assert sum(r.archived for r in reports) == len(finished), reports
        for queue in ("inventory", "billing", "general"):
            q = system.producer.queue(queue)
            left = [await q.client.zcard(q.keys[s]) for s in ("completed", "failed")]
            assert left == [0, 0], f"{queue} still holds finished jobs: {left}"

    run(healthy_topology, scenario)


def test_throttle_emits_at_most_once_per_resource_per_window(
    healthy_topology: Topology, workers: WorkerPool
) -> None:
    async def scenario(system: System) -> None:
        for sequence in range(25):
            for resource in ("sensor-a", "sensor-b"):
                job_id = await jobs.enqueue_record_update(
                    system.producer, resource, sequence
                )
                assert job_id == ids.record_update_job_id(resource, sequence)
        queue = system.producer.queue("general")
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while await queue.getJobCounts("waiting", "active", "delayed") != {
            "waiting": 0,
            "active": 0,
            "delayed": 0,
        }:
            assert time.monotonic() < deadline, "record updates never drained"
            await asyncio.sleep(0.1)
        emits = await rows(
            system,
            "SELECT resource_id, count(*) FROM record_emits GROUP BY resource_id"
            " ORDER BY resource_id",
        )
        assert emits == [("sensor-a", 1), ("sensor-b", 1)], emits

    run(healthy_topology, scenario)


def test_reset_leaves_no_rows_no_keys_and_full_stock(
    healthy_topology: Topology, workers: WorkerPool
) -> None:
    async def scenario(system: System) -> None:
        await place_order(system, order("to-reset"))
        await wait_settled(system, ["to-reset"])
        await reset.reset(system)
        leftover = await scalar(
            system,
            "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM deliveries)"
            " + (SELECT count(*) FROM stock WHERE on_hand <> initial_on_hand)",
        )
        assert leftover == 0, f"{leftover} rows survived the reset"
        keys = await system.redis.keys("*app-main*")
        assert not keys, f"keys survived the reset: {keys[:5]}"

    run(healthy_topology, scenario)


def test_order_accepted_during_a_redis_outage_completes_after_replay(
    healthy_topology: Topology, workers: WorkerPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Give up on Redis after about a second instead of thirty.
    monkeypatch.setattr(jobs, "ENQUEUE_DEADLINE_S", 1.0)
    impatient = healthy_topology.redis_settings().with_changes(
        retries=1, connect_timeout=0.3
    )
    redis_links = [
        name
        for name in healthy_topology.links
        if name.endswith(".client") and not name.startswith("postgres")
    ]

    async def scenario() -> None:
        async with System(impatient, healthy_topology.postgres_dsn) as system:
            await reset.reset(system)
            for link in redis_links:
                healthy_topology.toxiproxy.set_enabled(link, False)
            try:
                with pytest.raises(EnqueueFailed, match="could not enqueue"):
                    await place_order(system, order("outage"))
            finally:
                healthy_topology.toxiproxy.reset()
            state = await scalar(
                system, "SELECT state FROM orders WHERE order_id = 'outage'"
            )
            assert state == "accepted", f"the order must be kept, found {state}"

            report = await replay.replay(system)
            assert report.replayed == ["outage"], report
            assert await wait_settled(system, ["outage"]) == {"outage": "completed"}

    asyncio.run(scenario())


def test_a_preloaded_module_replaces_a_seam_inside_the_worker(
    healthy_topology: Topology, workers: WorkerPool, tmp_path: Path
) -> None:
    (tmp_path / "bp_seam_probe.py").write_text(
        "import system.effects as effects\n"
        "original = effects.send_notification\n"
        "async def tagged(conn, order_id, job_id, channel):\n"
        "    return await original(conn, order_id, job_id, 'probe')\n"
        "effects.send_notification = tagged\n"
    )
    regular = workers.for_queue("critical")
    for worker in regular:
        worker.stop()
    probe = spawn_worker(
        healthy_topology,
        "critical",
        preload=["bp_seam_probe"],
        env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    try:

        async def scenario(system: System) -> None:
            await place_order(system, order("seam", priority="critical"))
            await wait_settled(system, ["seam"])
            channels = await rows(system, "SELECT channel FROM notifications")
            assert channels == [("probe",)], (
                f"the preloaded seam did not run in the worker: {channels}"
            )

        run(healthy_topology, scenario)
    finally:
        probe.stop()
        for worker in regular:
            worker.start()


def test_a_postgres_outage_postpones_jobs_without_failing_orders(
    healthy_topology: Topology, workers: WorkerPool
) -> None:
    order_ids = [f"pg-{n}" for n in range(20)]

    async def place(system: System) -> None:
        for order_id in order_ids:
            await place_order(system, order(order_id))

    # Jobs wait in Redis while the workers are frozen, then meet a database
    # that is gone for longer than all three attempts' backoff (1 s + 2 s).
    for worker in workers:
        worker.pause()
    try:
        run(healthy_topology, place)
        healthy_topology.toxiproxy.set_enabled("postgres.client", False)
    finally:
        for worker in workers:
            worker.resume()
    time.sleep(4.0)
    healthy_topology.toxiproxy.set_enabled("postgres.client", True)

    async def scenario(system: System) -> None:
        states = await wait_settled(system, order_ids)
        failed = sorted(o for o, s in states.items() if s != "completed")
        assert not failed, f"orders failed by a database outage: {failed}"
        assert_each_effect_once(await effect_counts(system), order_ids, lines=2)

    asyncio.run(_without_reset(healthy_topology, scenario))


def test_batch_reports_run_on_their_own_queue_once_each(
    healthy_topology: Topology, workers: WorkerPool
) -> None:
    batch = spawn_worker(healthy_topology, "batch", concurrency=2)
    try:

        async def scenario(system: System) -> None:
            for report in ("daily", "weekly", "daily"):
                await jobs.enqueue_batch_report(system.producer, report, rows=10)
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while await scalar(system, "SELECT count(*) FROM batch_reports") < 2:
                assert time.monotonic() < deadline, "batch reports never ran"
                await asyncio.sleep(0.1)
            done = await system.producer.queue("batch").getJobCounts("completed")
            assert done == {"completed": 2}, f"same report id, same job: {done}"

        run(healthy_topology, scenario)
    finally:
        batch.stop()


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("system.replay", r"^replay examined 0 unfinished orders"),
        ("system.archive", r"^archived 3 jobs"),
        ("system.status", r"0 unfinished orders older than 30 s$"),
    ],
)
def test_command_line_tools_run_against_the_topology(
    healthy_topology: Topology, workers: WorkerPool, module: str, expected: str
) -> None:
    async def scenario(system: System) -> None:
        await place_order(system, order("cli"))
        await wait_settled(system, ["cli"])

    run(healthy_topology, scenario)
    env = {
        **os.environ,
        "BULLPROOF_REDIS": healthy_topology.redis_settings().to_json(),
        "BULLPROOF_PG_DSN": healthy_topology.postgres_dsn,
    }
    done = subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{module} exited {done.returncode}: {done.stderr}"
    last = done.stdout.strip().splitlines()[-1]
    assert re.search(expected, last), f"{module} printed {done.stdout!r}"


# -- faults --------------------------------------------------------------------


def test_workers_survive_a_master_failover_and_effects_stay_once(
    healthy_topology: Topology, workers: WorkerPool
) -> None:
    pids = {w.name: w.pid for w in workers}
    order_ids = [f"fo-{n}" for n in range(120)]
    killed: list[str] = []

    async def scenario(system: System) -> None:
        async def submit() -> None:
            for n, order_id in enumerate(order_ids):
                if n == 40:
                    # Kill the master mid-stream, from a thread: the adds
                    # keep going and must ride out the failover.
                    master = healthy_topology.current_master()
                    await asyncio.to_thread(healthy_topology.kill, master)
                    killed.append(master)
                await place_order(system, order(order_id))
                await asyncio.sleep(0.01)

        await submit()
        new_master = await asyncio.to_thread(
            healthy_topology.wait_for_master, killed[0], 30.0
        )
        assert new_master != killed[0], new_master

        # Writes the old master acknowledged but never replicated are gone;
        # replay is the system's answer to that, as in production.
        try:
            await wait_settled(system, order_ids, timeout=20.0)
        except AssertionError:
            await replay.replay(system, older_than_s=5.0)
            await wait_settled(system, order_ids)
        assert_each_effect_once(await effect_counts(system), order_ids, lines=2)

    run(healthy_topology, scenario)
    assert {w.name: w.pid for w in workers} == pids, "a worker was restarted"
    assert all(w.is_running for w in workers), "a worker died in the failover"
