"""The local topology: healthy on start, survives failover, isolates links, leaves
nothing running."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
import redis

from chaos import process
from chaos.topology import REDIS_NODES, SENTINEL_NODES, Topology, create

pytestmark = pytest.mark.slow


def test_topology_comes_up_healthy(topology: Topology) -> None:
    topology.wait_healthy(10)

    assert topology.health_problems() == []
    assert topology.current_master() in REDIS_NODES
    assert set(topology.sentinel_masters()) == set(SENTINEL_NODES)


def test_every_server_listens_on_loopback_only(topology: Topology) -> None:
    seen = {}
    for name, pid in topology.processes():
        for member in process.session_members(pid):
            seen[(name, member)] = process.listening_addresses(member)

    assert seen, "the provider reported no server processes"
    listeners = {addr for addrs in seen.values() for addr in addrs}
    assert listeners, "no listening socket found for any server"
    outside = {k: v for k, v in seen.items() if any(ip != "127.0.0.1" for ip, _ in v)}
    assert not outside, f"servers listening beyond 127.0.0.1: {outside}"


def test_clients_reach_every_part_through_proxies(topology: Topology) -> None:
    settings = topology.redis_settings()
    proxy_ports = {link.listen.port for link in topology.links.values()}

    assert {port for _, port in settings.sentinels} <= proxy_ports
    assert {int(a.rpartition(":")[2]) for a in settings.address_map.values()} <= (
        proxy_ports
    )
    dsn_port = int(topology.postgres_dsn.rpartition(":")[2].split("/")[0])
    assert dsn_port in proxy_ports, "the system's PostgreSQL DSN bypasses the proxy"


def test_writes_survive_master_sigkill_and_failover(healthy_topology: Topology) -> None:
    topo = healthy_topology
    old_master = topo.current_master()

    async def scenario() -> tuple[list[str], float]:
        client = topo.redis_client()
        try:
            # Writes confirmed by both replicas before the crash must survive it.
            for i in range(50):
                await client.set(f"before:{i}", i)
            replicated = await client.execute_command("WAIT", 2, 2000)
            assert replicated == 2, f"only {replicated} replicas confirmed the writes"

            topo.kill(old_master)
            t0 = time.monotonic()
            for i in range(50):
                await client.set(f"after:{i}", i)
            outage = time.monotonic() - t0

            keys = [f"before:{i}" for i in range(50)] + [
                f"after:{i}" for i in range(50)
            ]
            values = await client.mget(keys)
            missing = [k for k, v in zip(keys, values, strict=True) if v is None]
            return missing, outage
        finally:
            await client.aclose()

    missing, outage = asyncio.run(scenario())

    assert missing == [], f"acknowledged writes lost in failover: {missing}"
    new_master = topo.current_master()
    assert new_master != old_master, "the Sentinels still name the killed master"
    assert outage < 30, f"writes blocked for {outage:.1f} s"


def test_old_master_restarted_rejoins_as_replica(healthy_topology: Topology) -> None:
    topo = healthy_topology
    old_master = topo.current_master()

    topo.kill(old_master)
    topo.wait_for_master(not_name=old_master, timeout=30)
    topo.restart(old_master)
    topo.wait_healthy(30)
    new_master = topo.current_master()

    with topo.admin(old_master) as node:
        info = node.info("replication")
    assert info["role"] == "slave", f"{old_master} came back as {info['role']}"
    assert info["master_port"] == topo.peer(new_master).port, (
        f"{old_master} replicates from port {info['master_port']}, not from "
        f"{new_master}; sentinels now say {topo.sentinel_masters()}, "
        f"peers { ({n: topo.peer(n).port for n in REDIS_NODES}) }"
    )
    assert new_master != old_master


def _link_works(topo: Topology, link_name: str) -> bool:
    link = topo.links[link_name]
    if link.node == "postgres":
        dsn = topo.postgres_dsn
        try:
            with psycopg.connect(dsn, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False
    client = redis.Redis(
        host=link.listen.host,
        port=link.listen.port,
        password=topo.options.redis_password,
        socket_timeout=1,
        socket_connect_timeout=1,
    )
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        client.close()


@pytest.mark.parametrize(
    "cut", ["redis-2.client", "sentinel-3.peer", "postgres.client"]
)
def test_disabling_one_proxy_blocks_exactly_that_link(
    healthy_topology: Topology, cut: str
) -> None:
    topo = healthy_topology
    topo.toxiproxy.set_enabled(cut, False)
    try:
        working = {name: _link_works(topo, name) for name in topo.links}
    finally:
        topo.toxiproxy.set_enabled(cut, True)

    assert working[cut] is False, f"{cut} still passes traffic while disabled"
    blocked = sorted(name for name, ok in working.items() if not ok and name != cut)
    assert blocked == [], f"disabling {cut} also blocked {blocked}"
    assert _link_works(topo, cut), f"{cut} does not pass traffic after re-enabling"


def _alive_sessions(sessions: list[int]) -> list[int]:
    return [pid for sid in sessions for pid in process.session_members(sid)]


def test_stop_leaves_no_server_process() -> None:
    topo = create("local")
    topo.start()
    sessions = [pid for _, pid in topo.processes()]
    assert len(sessions) == len(topo.nodes), f"one server per node, got {sessions}"
    assert _alive_sessions(sessions)

    topo.stop()

    assert _alive_sessions(sessions) == []
    assert topo.run_dir is not None and not topo.run_dir.exists()


OWNER = textwrap.dedent(
    """
    import json, sys, time
    from chaos.topology import create
    topo = create("local")
    topo.start()
    print(json.dumps([pid for _, pid in topo.processes()]), flush=True)
    time.sleep(600)
    """
)


def test_sigkill_of_the_owner_leaves_no_server_process() -> None:
    # The owner dies without running any clean-up code of its own.
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        sessions = json.loads(line)
        assert len(sessions) == 8 and _alive_sessions(sessions)

        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while _alive_sessions(sessions) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()

    assert _alive_sessions(sessions) == [], "servers outlived their owner"


FORGETFUL = textwrap.dedent(
    """
    import json
    from chaos.topology import create
    topo = create("local")
    topo.start()
    sessions = [pid for _, pid in topo.processes()]
    print(json.dumps({"run_dir": str(topo.run_dir), "sessions": sessions}))
    """
)


def test_exit_without_stop_still_stops_the_topology() -> None:
    # The owner returns normally but never calls stop().
    run = subprocess.run(
        [sys.executable, "-c", FORGETFUL],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    assert _alive_sessions(seen["sessions"]) == []
    assert not os.path.exists(seen["run_dir"]), "the run dir outlived its owner"


def test_free_ports_are_on_loopback_and_distinct() -> None:
    from chaos.topology.base import free_ports

    ports = free_ports(20)
    assert len(set(ports)) == 20
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
