"""The containers topology: healthy on start, survives a container's SIGKILL,
isolates links, and leaves no container of bullproof behind.

Skipped, with the reason, where no Docker engine answers or the images are not
built (`docker/engine.sh start`, `make images`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos.topology import REDIS_NODES, SENTINEL_NODES, Topology
from chaos.topology.base import free_ports
from chaos.topology.containers import (
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_RUN,
    ContainersTopology,
    DockerEngineError,
    MissingImageError,
    _process_start,
    availability_problem,
    engine,
    reap_orphans,
    remove_containers,
)
from tests.test_topology import _link_works

pytestmark = [pytest.mark.slow, pytest.mark.containers]

# Checked once for the module: without an engine or the images, every test is
# skipped with one line that says what is missing and the command that fixes it.
UNAVAILABLE = availability_problem()
if UNAVAILABLE is not None:
    pytest.skip(UNAVAILABLE, allow_module_level=True)


def _containers(label: str) -> list[str]:
    """Names of the containers `docker ps -a` lists with `label`."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return sorted(out.split())


@pytest.fixture(scope="module")
def topo() -> Iterator[ContainersTopology]:
    topology = ContainersTopology()
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def healthy(topo: ContainersTopology) -> Iterator[ContainersTopology]:
    topo.heal()
    yield topo
    topo.heal()


def test_topology_comes_up_healthy_in_containers(topo: ContainersTopology) -> None:
    topo.wait_healthy(10)

    assert topo.health_problems() == []
    assert topo.current_master() in REDIS_NODES
    assert set(topo.sentinel_masters()) == set(SENTINEL_NODES)
    running = _containers(f"{LABEL_RUN}={topo.run_id}")
    assert len(running) == len(topo.nodes), (
        f"expected one container per node ({sorted(topo.nodes)}), found {running}"
    )


def test_every_container_shares_the_host_network(topo: ContainersTopology) -> None:
    client = engine()
    try:
        modes = {
            c.labels["bullproof.node"]: c.attrs["HostConfig"]["NetworkMode"]
            for c in client.containers.list(
                all=True, filters={"label": f"{LABEL_RUN}={topo.run_id}"}
            )
        }
        networks = [n.name for n in client.networks.list()]
    finally:
        client.close()

    assert modes and set(modes.values()) == {"host"}, f"network modes: {modes}"
    assert sorted(networks) == ["host", "none"], f"networks were created: {networks}"


def test_writes_survive_master_container_sigkill_and_failover(
    healthy: ContainersTopology,
) -> None:
    topo = healthy
    old_master = topo.current_master()
    old_container = topo.container_id(old_master)

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
            await client.set("after:0", 0)
            outage = time.monotonic() - t0
            for i in range(1, 50):
                await client.set(f"after:{i}", i)

            keys = [f"before:{i}" for i in range(50)]
            keys += [f"after:{i}" for i in range(50)]
            values = await client.mget(keys)
            return [k for k, v in zip(keys, values, strict=True) if v is None], outage
        finally:
            await client.aclose()

    missing, outage = asyncio.run(scenario())

    assert not topo.is_running(old_master), f"{old_master} still runs after kill"
    assert _gone(old_container), f"container {old_container[:12]} still exists"
    assert missing == [], f"acknowledged writes lost in failover: {missing}"
    # The client found the new master through one Sentinel; the others may
    # take a moment to hear of it.
    assert topo.wait_for_master(not_name=old_master, timeout=10) != old_master
    assert outage < 30, f"writes blocked for {outage:.1f} s after the kill"


def _gone(container_id: str) -> bool:
    client = engine()
    try:
        ids = [c.id for c in client.containers.list(all=True)]
    finally:
        client.close()
    return container_id not in ids


def test_old_master_restarted_rejoins_as_replica(healthy: ContainersTopology) -> None:
    topo = healthy
    old_master = topo.current_master()
    old_container = topo.container_id(old_master)

    topo.kill(old_master)
    new_master = topo.wait_for_master(not_name=old_master, timeout=30)
    topo.restart(old_master)
    topo.wait_healthy(30)

    assert topo.container_id(old_master) != old_container, "no new container"
    with topo.admin(old_master) as node:
        info = node.info("replication")
    assert info["role"] == "slave", f"{old_master} came back as {info['role']}"
    assert info["master_port"] == topo.peer(new_master).port, (
        f"{old_master} replicates from port {info['master_port']}, not from "
        f"{new_master} (peer port {topo.peer(new_master).port})"
    )


def _answers(topo: Topology, name: str) -> bool:
    """Whether node `name` answers a PING straight away, asked once, no retry."""
    address = topo.nodes[name].address
    client = redis.Redis(
        host=address.host,
        port=address.port,
        password=topo.options.redis_password,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        client.close()


def test_paused_container_stops_answering_until_resumed(
    healthy: ContainersTopology,
) -> None:
    topo = healthy
    replica = next(n for n in REDIS_NODES if n != topo.current_master())

    topo.pause(replica)
    try:
        assert topo.is_running(replica), "a paused node must count as running"
        assert not _answers(topo, replica), f"{replica} answers while paused"
    finally:
        topo.resume(replica)

    # A thawed server on a busy machine may need a moment to catch up.
    deadline = time.monotonic() + 5
    while not _answers(topo, replica) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _answers(topo, replica), f"{replica} does not answer 5 s after resume"


@pytest.mark.parametrize("cut", ["redis-2.client", "sentinel-3.peer"])
def test_disabling_one_proxy_blocks_exactly_that_link(
    healthy: ContainersTopology, cut: str
) -> None:
    topo = healthy
    redis_links = [n for n, link in topo.links.items() if link.node != "postgres"]

    topo.toxiproxy.set_enabled(cut, False)
    try:
        working = {name: _link_works(topo, name) for name in redis_links}
    finally:
        topo.toxiproxy.set_enabled(cut, True)

    assert working[cut] is False, f"{cut} still passes traffic while disabled"
    blocked = sorted(name for name, ok in working.items() if not ok and name != cut)
    assert blocked == [], f"disabling {cut} also blocked {blocked}"
    assert _link_works(topo, cut), f"{cut} does not pass traffic after re-enabling"


def test_stop_leaves_no_container_of_bullproof() -> None:
    topology = ContainersTopology()
    label = f"{LABEL_RUN}={topology.run_id}"
    topology.start()
    try:
        started = _containers(label)
    finally:
        topology.stop()

    assert len(started) == len(topology.nodes), f"containers while up: {started}"
    assert _containers(label) == [], "containers left after stop()"
    assert topology.run_dir is not None and not topology.run_dir.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_containers_of_a_dead_owner_are_reaped() -> None:
    client = engine()
    run = "reap-test"
    image = "bullproof/toxiproxy:latest"
    live: dict[str, Any] = {LABEL_RUN: run, LABEL_OWNER_HOST: socket.gethostname()}
    try:
        orphan = client.containers.create(
            image,
            ["toxiproxy-server", "-version"],
            network_mode="host",
            labels={**live, LABEL_OWNER_PID: str(_dead_pid()), LABEL_OWNER_START: "1"},
        )
        own = client.containers.create(
            image,
            ["toxiproxy-server", "-version"],
            network_mode="host",
            labels={
                **live,
                LABEL_OWNER_PID: str(os.getpid()),
                LABEL_OWNER_START: _process_start(os.getpid()),
            },
        )

        removed = reap_orphans(client)

        remaining = _containers(f"{LABEL_RUN}={run}")
        assert orphan.name in removed, f"orphan not reaped; removed {removed}"
        assert remaining == [own.name], (
            f"expected only the live owner's container left, found {remaining}"
        )
    finally:
        for container in client.containers.list(
            all=True, filters={"label": f"{LABEL_RUN}={run}"}
        ):
            container.remove(force=True)
        client.close()


OWNER = textwrap.dedent(
    """
    from chaos.topology.containers import ContainersTopology
    topo = ContainersTopology()
    topo.start()
    print(topo.run_id, flush=True)
    input()
    """
)


def test_containers_of_a_sigkilled_owner_are_removed_at_next_start() -> None:
    # The owner dies without running any clean-up code of its own.
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert owner.stdout is not None
        run_id = owner.stdout.readline().strip()
        assert run_id, f"the owner did not start its topology (exit {owner.poll()})"
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for stream in (owner.stdin, owner.stdout):
            if stream is not None:
                stream.close()
    label = f"{LABEL_RUN}={run_id}"
    orphans = _containers(label)
    assert len(orphans) == 8, f"expected the dead owner's 8 containers: {orphans}"

    with ContainersTopology() as topology:
        assert topology.health_problems() == []

    assert _containers(label) == [], "the next start left the orphans running"


FORGETFUL_OWNER = textwrap.dedent(
    """
    from chaos.topology.containers import ContainersTopology
    topo = ContainersTopology()
    topo.start()
    print(topo.run_id, flush=True)
    """
)


def test_containers_of_an_owner_that_exits_without_stop_are_removed() -> None:
    owner = subprocess.run(
        [sys.executable, "-c", FORGETFUL_OWNER],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert owner.returncode == 0, f"the owner failed: {owner.stderr[-2000:]}"
    run_id = owner.stdout.strip()

    assert run_id, "the owner printed no run id"
    left = _containers(f"{LABEL_RUN}={run_id}")
    assert left == [], f"containers outlived an owner that exited: {left}"


def _role_container(client: Any, run: str, role: str, env: dict[str, str]) -> Any:
    """A container of the redis image in one of the roles docker/compose.yaml
    uses, configured from the environment as there."""
    return client.containers.run(
        "bullproof/redis:latest",
        [role],
        environment=env,
        network_mode="host",
        labels={
            LABEL_RUN: run,
            LABEL_OWNER_HOST: socket.gethostname(),
            LABEL_OWNER_PID: str(os.getpid()),
            LABEL_OWNER_START: _process_start(os.getpid()),
        },
        detach=True,
    )


def _sentinel_view(port: int, password: str) -> dict[str, Any]:
    client = redis.Redis(
        port=port, password=password, decode_responses=True, socket_timeout=1
    )
    try:
        return dict(client.sentinel_master("bullproof"))
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        return {}
    finally:
        client.close()


def test_compose_roles_replicate_and_fail_over() -> None:
    # The roles of docker/compose.yaml on free ports: a master, two replicas
    # and three Sentinels that configure themselves from the environment.
    client = engine()
    run = f"compose-roles-{os.getpid()}"
    password = "compose-secret"
    master_port, r2, r3, *sentinels = free_ports(6)
    common = {
        "REDIS_PASSWORD": password,
        "REDIS_MASTER_PORT": str(master_port),
        "SENTINEL_DOWN_AFTER_MS": "1000",
    }
    try:
        master = _role_container(
            client, run, "master", {**common, "REDIS_PORT": str(master_port)}
        )
        for port in (r2, r3):
            _role_container(client, run, "replica", {**common, "REDIS_PORT": str(port)})
        for port in sentinels:
            _role_container(
                client, run, "sentinel", {**common, "REDIS_PORT": str(port)}
            )

        # Unwired Sentinels find each other and the replicas by themselves.
        deadline = time.monotonic() + 40
        views: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            views = [_sentinel_view(p, password) for p in sentinels]
            if all(
                v.get("num-other-sentinels") == 2 and v.get("num-slaves") == 2
                for v in views
            ):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"Sentinels never saw the whole topology: {views}")

        writer = redis.Redis(port=master_port, password=password, socket_timeout=2)
        try:
            writer.set("compose:key", "kept")
            replicated = writer.execute_command("WAIT", 2, 2000)
            config = writer.config_get("*")
        finally:
            writer.close()
        assert replicated == 2, f"{replicated} replicas confirmed the write"
        assert config["appendonly"] == "yes" and config["appendfsync"] == "everysec"
        assert config["save"] == "900 1 300 10 60 10000", f"save is {config['save']}"
        assert config["maxmemory-policy"] == "noeviction"

        master.kill(signal="SIGKILL")
        deadline = time.monotonic() + 30
        promoted = None
        while time.monotonic() < deadline and promoted is None:
            ports = {
                int(v.get("port", 0))
                for v in (_sentinel_view(p, password) for p in sentinels)
            }
            if len(ports) == 1 and ports & {r2, r3}:
                promoted = ports.pop()
            time.sleep(0.2)
        assert promoted is not None, f"no failover after the master's kill: {ports}"
        reader = redis.Redis(port=promoted, password=password, socket_timeout=2)
        try:
            assert reader.get("compose:key") == b"kept", "the write was lost"
        finally:
            reader.close()
    finally:
        remove_containers(client, f"{LABEL_RUN}={run}")
        client.close()


def test_compose_postgres_initialises_itself_and_runs_unprivileged() -> None:
    client = engine()
    run = f"compose-postgres-{os.getpid()}"
    (port,) = free_ports(1)
    try:
        container = client.containers.run(
            "bullproof/postgres:latest",
            ["serve"],
            environment={
                "POSTGRES_PASSWORD": "compose-secret",
                "POSTGRES_PORT": str(port),
            },
            network_mode="host",
            labels={
                LABEL_RUN: run,
                LABEL_OWNER_HOST: socket.gethostname(),
                LABEL_OWNER_PID: str(os.getpid()),
                LABEL_OWNER_START: _process_start(os.getpid()),
            },
            detach=True,
        )
        dsn = f"postgresql://bullproof:compose-secret@127.0.0.1:{port}/bullproof"
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(dsn, connect_timeout=1) as conn:
                    row = conn.execute(
                        "SELECT current_user, current_database(),"
                        " current_setting('listen_addresses')"
                    ).fetchone()
                break
            except psycopg.OperationalError as exc:
                container.reload()
                assert container.status == "running", (
                    f"postgres exited: {container.logs().decode()[-1500:]}"
                )
                assert time.monotonic() < deadline, f"postgres never answered: {exc}"
                time.sleep(0.2)
        top = container.top(ps_args="-o pid,user,comm")["Processes"]
    finally:
        remove_containers(client, f"{LABEL_RUN}={run}")
        client.close()

    assert row == ("bullproof", "bullproof", "127.0.0.1"), f"got {row}"
    users = {user for _, user, _ in top}
    assert users, "no process found in the PostgreSQL container"
    assert "root" not in users, f"PostgreSQL processes run as {users}"


def test_missing_image_names_the_fix() -> None:
    images = {
        "redis": "bullproof/redis:latest",
        "postgres": "bullproof/postgres:no-such-tag",
        "toxiproxy": "bullproof/toxiproxy:latest",
    }
    with pytest.raises(MissingImageError, match=r"postgres:no-such-tag.*make images"):
        ContainersTopology(images=images)


def test_missing_engine_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/bullproof-docker.sock")

    with pytest.raises(DockerEngineError, match=r"docker/engine\.sh start"):
        ContainersTopology()
