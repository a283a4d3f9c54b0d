"""Each fault does what it says on a real topology, and its stop heals it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis

from chaos.errors import ConfigurationError, HarnessError
from chaos.faults import FAULTS, FaultContext, Nemesis
from chaos.faults.toxics import TOXIC_FAULTS
from chaos.topology import REDIS_NODES, Topology

pytestmark = pytest.mark.slow


@pytest.fixture
def nemesis(healthy_topology: Topology) -> Iterator[Nemesis]:
    with Nemesis(healthy_topology) as n:
        yield n


def through(topology: Topology, link: str, timeout: float = 1.0) -> redis.Redis:
    """A client that dials the proxy `link`, not the node behind it."""
    listen = topology.links[link].listen
    return redis.Redis(
        host=listen.host,
        port=listen.port,
        password=topology.options.redis_password,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


def ping_s(topology: Topology, link: str, timeout: float = 2.0) -> float:
    with through(topology, link, timeout) as client:
        client.ping()
        t0 = time.monotonic()
        client.ping()
        return time.monotonic() - t0


def assert_healed(topology: Topology) -> None:
    """Every proxy enabled, no toxic left, every node up, one agreed master."""
    topology.wait_healthy(45)
    for name, proxy in topology.toxiproxy.proxies().items():
        assert proxy.enabled, f"proxy {name} still disabled after stop"
        assert not proxy.toxics, f"proxy {name} still has toxics {proxy.toxics}"
    down = [n for n in topology.nodes if not topology.is_running(n)]
    assert not down, f"nodes still down after stop: {down}"
    masters = set(topology.sentinel_masters().values())
    assert len(masters) == 1 and None not in masters, f"sentinels say {masters}"


def test_registry_names_every_fault_kind() -> None:
    expected = {"kill", "crash", "partition", "split_brain", "cut_client"}
    expected |= {"cut_postgres"} | {cls.name for cls in TOXIC_FAULTS}
    missing = expected - set(FAULTS)
    assert not missing, f"faults missing from the registry: {missing}"


def test_kill_master_makes_the_sentinels_name_another(nemesis: Nemesis) -> None:
    topology = nemesis.topology
    old = topology.current_master()

    fault = nemesis.start("kill", "master", {"failover_timeout": 20})
    start = fault.records[0]
    assert start.nodes == (old,), f"killed {start.nodes}, expected the master {old}"
    assert not topology.is_running(old), f"{old} still runs after kill"
    new = start.observed["new_master"]
    assert new in REDIS_NODES and new != old, f"new master {new!r} (old {old})"
    assert topology.current_master() == new

    nemesis.stop(fault)
    assert_healed(topology)
    assert topology.current_master() == new, "the restarted node took mastery back"


def test_kill_replica_leaves_the_master_alone(nemesis: Nemesis) -> None:
    topology = nemesis.topology
    master = topology.current_master()

    fault = nemesis.start("kill", "replica")
    node = fault.records[0].nodes[0]
    assert node != master and not topology.is_running(node)
    assert fault.records[0].observed == {"was_master": False}
    assert topology.current_master() == master

    stop = nemesis.stop(fault)
    assert stop.observed["ready"], f"{node} not ready after restart"
    assert_healed(topology)


def test_partition_refuses_the_cut_link_and_no_other(nemesis: Nemesis) -> None:
    topology = nemesis.topology

    fault = nemesis.start("partition", "redis-2.client")
    assert fault.records[0].links == ("redis-2.client",)
    with pytest.raises(redis.ConnectionError), through(topology, "redis-2.client") as c:
        c.ping()
    with through(topology, "redis-3.client") as other:
        assert other.ping(), "an uncut link stopped working"

    nemesis.stop(fault)
    with through(topology, "redis-2.client") as c:
        assert c.ping(), "the link still refuses after stop"
    assert_healed(topology)


def test_blackhole_partition_swallows_requests(nemesis: Nemesis) -> None:
    topology = nemesis.topology

    fault = nemesis.start("partition", "redis-3.client", {"mode": "blackhole"})
    with (
        pytest.raises(redis.TimeoutError),
        through(topology, "redis-3.client", 0.5) as c,
    ):
        c.ping()

    nemesis.stop(fault)
    with through(topology, "redis-3.client") as c:
        assert c.ping()
    assert_healed(topology)


def test_split_brain_lets_clients_write_to_the_isolated_master(
    nemesis: Nemesis,
) -> None:
    topology = nemesis.topology
    old = topology.current_master()

    fault = nemesis.start("split_brain", "master")
    assert fault.records[0].links == (f"{old}.peer",)

    # Peers lose the master, clients do not: the old master still acks writes.
    with through(topology, f"{old}.client") as client:
        assert client.set("bullproof:test:split", "written-to-isolated-master")
    new = topology.wait_for_master(not_name=old, timeout=20)
    assert new != old

    stop = nemesis.stop(fault)
    assert stop.observed["failed_over"], f"no failover seen: {stop.observed}"
    assert_healed(topology)
    assert topology.current_master() == new


def test_cut_client_cuts_that_client_alone(nemesis: Nemesis) -> None:
    topology = nemesis.topology
    topology.add_client("faulttest")
    master = topology.current_master()

    fault = nemesis.start("cut_client", "faulttest")
    assert set(fault.records[0].links) == set(topology.client_links("faulttest"))
    own = f"{master}.client.faulttest"
    with pytest.raises(redis.ConnectionError), through(topology, own) as c:
        c.ping()
    with through(topology, f"{master}.client") as c:
        assert c.ping(), "the shared client link was cut too"

    nemesis.stop(fault)
    with through(topology, own) as c:
        assert c.ping()
    assert_healed(topology)


def test_cut_postgres_cuts_the_system_but_not_checkers(nemesis: Nemesis) -> None:
    topology = nemesis.topology

    fault = nemesis.start("cut_postgres", "postgres")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(topology.postgres_dsn, connect_timeout=2).close()
    with psycopg.connect(topology.postgres_admin_dsn, connect_timeout=2) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    nemesis.stop(fault)
    with psycopg.connect(topology.postgres_dsn, connect_timeout=2) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert_healed(topology)


def test_latency_slows_the_link_it_is_on_and_no_other(nemesis: Nemesis) -> None:
    topology = nemesis.topology
    master = topology.current_master()
    before = ping_s(topology, f"{master}.client")

    fault = nemesis.start(
        "latency", "master.client", {"latency": 300, "jitter": 20, "stream": "both"}
    )
    slowed = ping_s(topology, f"{master}.client")
    other = ping_s(topology, f"{master}.peer")
    assert slowed >= 0.5, f"PING took {slowed:.3f} s with 2 x 300 ms latency"
    assert other < 0.1, f"the peer link slowed too: {other:.3f} s"

    nemesis.stop(fault)
    after = ping_s(topology, f"{master}.client")
    assert after < 0.1, f"PING still takes {after:.3f} s (before: {before:.3f} s)"
    assert_healed(topology)


def test_latency_can_be_raised_while_active(nemesis: Nemesis) -> None:
    topology = nemesis.topology
    fault = nemesis.start("latency", "redis-2.client", {"latency": 10})
    assert fault.records[0].links == ("redis-2.client",)

    fault.update(latency=400)  # type: ignore[attr-defined]
    [toxic] = topology.toxiproxy.toxics("redis-2.client")
    assert toxic["attributes"]["latency"] == 400, toxic
    assert ping_s(topology, "redis-2.client") >= 0.35

    nemesis.stop(fault)
    assert_healed(topology)


@pytest.mark.parametrize("cls", TOXIC_FAULTS, ids=lambda c: c.name)
def test_every_toxic_is_added_on_start_and_removed_on_stop(
    nemesis: Nemesis, cls: type
) -> None:
    topology = nemesis.topology

    fault = nemesis.start(cls.name, "redis-3.client", {"stream": "both"})
    kinds = sorted(t["type"] for t in topology.toxiproxy.toxics("redis-3.client"))
    assert kinds == [cls.kind, cls.kind], f"toxics on the link: {kinds}"

    nemesis.stop(fault)
    assert topology.toxiproxy.toxics("redis-3.client") == []
    assert_healed(topology)


def test_reset_peer_resets_connections(nemesis: Nemesis) -> None:
    topology = nemesis.topology
    fault = nemesis.start("reset_peer", "redis-2.client", {"timeout": 0})
    with pytest.raises(redis.ConnectionError), through(topology, "redis-2.client") as c:
        c.ping()
    nemesis.stop(fault)
    assert_healed(topology)


def test_limit_data_closes_after_the_limit(nemesis: Nemesis) -> None:
    topology = nemesis.topology
    fault = nemesis.start("limit_data", "redis-2.client", {"bytes": 200})
    with pytest.raises(redis.ConnectionError), through(topology, "redis-2.client") as c:
        # AUTH and a few PINGs pass, then the proxy closes the connection.
        for _ in range(100):
            c.ping()
    nemesis.stop(fault)
    assert_healed(topology)


def test_bandwidth_limits_throughput(nemesis: Nemesis) -> None:
    topology = nemesis.topology
    master = topology.current_master()
    with through(topology, f"{master}.client") as c:
        c.set("bullproof:test:blob", "x" * 200_000)
    fault = nemesis.start("bandwidth", "replica.client", {"rate": 100})
    replica = fault.records[0].links[0]
    with through(topology, replica, timeout=10) as c:
        t0 = time.monotonic()
        value = c.get("bullproof:test:blob")
        elapsed = time.monotonic() - t0
    assert value is not None and len(value) == 200_000
    assert elapsed >= 1.5, f"200 kB at 100 KB/s took only {elapsed:.2f} s"
    nemesis.stop(fault)
    assert_healed(topology)


def test_process_crash_loses_no_acknowledged_write(nemesis: Nemesis) -> None:
    topology = nemesis.topology
    master = topology.current_master()

    fault = nemesis.start("crash", "master", {"power_loss": False, "markers": 100})
    seen = fault.records[0].observed
    assert seen["acked_writes"] == 100, seen
    assert seen["lost_writes"] == 0, f"SIGKILL lost acknowledged writes: {seen}"
    assert seen["aof_bytes_cut"] == 0

    stop = nemesis.stop(fault)
    assert stop.observed["stayed_master"], f"{master} lost mastery: {stop.observed}"
    assert_healed(topology)


def test_power_loss_loses_the_unsynced_second(nemesis: Nemesis) -> None:
    topology = nemesis.topology
    master = topology.current_master()

    fault = nemesis.start("crash", "master", {"markers": 100, "window": 0.5})
    seen = fault.records[0].observed
    assert seen["aof_bytes_cut"] > 0, seen
    assert seen["lost_writes"] == 100, f"expected all window writes lost: {seen}"
    assert seen["role_after_restart"] == "master", seen

    stop = nemesis.stop(fault)
    assert stop.observed["stayed_master"], f"{master} lost mastery: {stop.observed}"
    assert_healed(topology)

    # The loss spread: the replicas resynchronised from the crashed master.
    for node in REDIS_NODES:
        with topology.admin(node) as client:
            assert client.get(seen["marker_key"]) is None, f"{node} kept markers"


def test_a_fault_cannot_start_twice_or_stop_unstarted(nemesis: Nemesis) -> None:
    fault = nemesis.start("latency", "redis-2.client")
    with pytest.raises(HarnessError, match="already started"):
        fault.start()
    nemesis.stop(fault)
    with pytest.raises(HarnessError, match="not started"):
        fault.stop()
    assert fault.heal() is None


def test_unknown_fault_and_target_are_configuration_errors(nemesis: Nemesis) -> None:
    with pytest.raises(ConfigurationError, match="unknown fault 'explode'"):
        nemesis.start("explode", "master")
    with pytest.raises(ConfigurationError, match="cannot target 'redis-9'"):
        nemesis.start("kill", "redis-9")
    with pytest.raises(
        ConfigurationError, match=r"^latency on redis-2.client: unknown param\(s\)"
    ):
        nemesis.start("latency", "redis-2.client", {"latency_ms": 100})
    assert nemesis.active == []


def test_heal_all_undoes_every_active_fault(healthy_topology: Topology) -> None:
    nemesis = Nemesis(healthy_topology)
    nemesis.start("partition", "redis-2.client")
    nemesis.start("latency", "redis-3.client", {"latency": 50})
    nemesis.start("kill", "sentinel-3")
    assert len(nemesis.active) == 3

    records = nemesis.heal_all()
    assert [r.fault for r in records] == ["kill", "latency", "partition"]
    assert nemesis.active == []
    assert_healed(healthy_topology)


# -- worker faults and duplicate submission, with the reference system --------


async def _place(topology: Topology, count: int, prefix: str) -> list[str]:
    from system.app import System
    from system.orders import place_order

    async with System(topology.redis_settings(), topology.postgres_dsn) as system:
        ids = [f"{prefix}-{i}-{time.time_ns()}" for i in range(count)]
        for order_id in ids:
            await place_order(
                system,
                {
                    "order_id": order_id,
                    "customer_id": "c-faults",
                    "lines": [{"sku": "SKU-BREAD", "quantity": 1}],
                },
            )
        return ids


def _deliveries(topology: Topology, job_ids: list[str]) -> dict[str, list[str]]:
    with psycopg.connect(topology.postgres_admin_dsn) as conn:
        rows = conn.execute(
            "SELECT job_id, worker FROM deliveries WHERE job_id = ANY(%s) ORDER BY id",
            (job_ids,),
        ).fetchall()
    seen: dict[str, list[str]] = {}
    for job_id, worker in rows:
        seen.setdefault(job_id, []).append(worker)
    return seen


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout} s"
        time.sleep(0.1)


@pytest.fixture
def slow_workers(healthy_topology: Topology) -> Iterator[dict[str, Any]]:
    """Two inventory workers whose jobs take 2 s each, locks of 1.5 s."""
    from chaos.workers import spawn_worker

    workers: dict[str, Any] = {}
    try:
        for name in ("inv-a", "inv-b"):
            workers[name] = spawn_worker(
                healthy_topology,
                "inventory",
                name=f"{name}-{time.time_ns() % 100000}",
                concurrency=2,
                lock_duration_ms=1500,
                env={"BULLPROOF_WORK_MS": "2000"},
            )
        yield {w.name: w for w in workers.values()}
    finally:
        for worker in workers.values():
            worker.stop(grace=1.0)


def test_pause_worker_past_its_lock_delivers_its_job_twice(
    healthy_topology: Topology, slow_workers: dict[str, Any]
) -> None:
    topology = healthy_topology
    paused, other = list(slow_workers)
    context = FaultContext(workers=slow_workers)
    with Nemesis(topology, context=context) as nemesis:
        asyncio.run(_place(topology, 6, "pause"))
        fault = nemesis.start("pause_worker", paused)
        held = fault.records[0].observed["held_jobs"]
        assert held, f"{paused} held no job when paused: {fault.records[0]}"

        # Lock 1.5 s, stalled check every 3 s: the other worker takes over.
        _wait_for(
            lambda: all(other in _deliveries(topology, held).get(j, []) for j in held),
            20,
            f"a second delivery of {held} to {other}",
        )
        stop = nemesis.stop(fault)
        assert stop.observed["running"] and stop.observed["paused_s"] > 1.5

    seen = _deliveries(topology, held)
    for job in held:
        assert seen[job][0] == paused and other in seen[job], (job, seen[job])


def test_kill_worker_mid_job_restarts_it_and_the_job_runs_again(
    healthy_topology: Topology, slow_workers: dict[str, Any]
) -> None:
    topology = healthy_topology
    victim = next(iter(slow_workers))
    context = FaultContext(workers=slow_workers)
    with Nemesis(topology, context=context) as nemesis:
        asyncio.run(_place(topology, 6, "kill"))
        fault = nemesis.start("kill_worker", victim)
        held = fault.records[0].observed["held_jobs"]
        assert held, f"{victim} held no job when killed"
        assert not slow_workers[victim].is_running

        nemesis.stop(fault)
        assert slow_workers[victim].is_running, "the worker was not restarted"
        _wait_for(
            lambda: all(len(_deliveries(topology, held)[j]) >= 2 for j in held),
            20,
            f"a second delivery of the jobs {victim} held",
        )


def test_duplicate_submission_creates_one_order(nemesis: Nemesis) -> None:
    topology = nemesis.topology
    fault = nemesis.start("duplicate", "place_order", {"copies": 4})
    seen = fault.records[0].observed
    assert seen["errors"] == 0, seen["answers"]
    created = [a["created"] for a in seen["answers"]]
    assert sorted(created) == [False, False, False, True], created

    order_id = seen["event"]["order_id"]
    with psycopg.connect(topology.postgres_admin_dsn) as conn:
        [(rows,)] = conn.execute(
            "SELECT count(*) FROM orders WHERE order_id = %s", (order_id,)
        ).fetchall()
    assert rows == 1, f"order {order_id} stored {rows} times"
    nemesis.stop(fault)
