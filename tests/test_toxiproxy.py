"""The Toxiproxy wrapper against a real Toxiproxy server in front of a real Redis."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chaos import process
from chaos.errors import ToxiproxyError
from chaos.topology.base import free_ports
from chaos.topology.local import binaries
from chaos.toxiproxy import ToxiproxyAPI

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """A Toxiproxy server and a Redis server: (API port, Redis port)."""
    logs = tmp_path_factory.mktemp("toxiproxy")
    api_port, redis_port = free_ports(2)
    bins = binaries()
    toxiproxy = process.spawn(
        [bins["toxiproxy-server"], "-host", "127.0.0.1", "-port", str(api_port)],
        log_path=logs / "toxiproxy.log",
    )
    server = process.spawn(
        [
            bins["redis-server"],
            "--bind",
            "127.0.0.1",
            "--port",
            str(redis_port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        log_path=logs / "redis.log",
        cwd=Path(logs),
    )
    try:
        ToxiproxyAPI("127.0.0.1", api_port).wait_ready(10)
        yield api_port, redis_port
    finally:
        process.kill(toxiproxy)
        process.kill(server)


@pytest.fixture
def api(servers: tuple[int, int]) -> Iterator[ToxiproxyAPI]:
    client = ToxiproxyAPI("127.0.0.1", servers[0], timeout=2.0)
    yield client
    for name in client.proxies():
        client.delete_proxy(name)


@pytest.fixture
def proxy(api: ToxiproxyAPI, servers: tuple[int, int]) -> Iterator[redis.Redis]:
    """Proxy `r` in front of the Redis server, and a client that dials it."""
    [port] = free_ports(1)
    api.create_proxy("r", f"127.0.0.1:{port}", f"127.0.0.1:{servers[1]}")
    with redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1) as c:
        yield c


def timed_ping(client: redis.Redis) -> float:
    t0 = time.monotonic()
    client.ping()
    return time.monotonic() - t0


def test_proxy_is_created_and_listed(api: ToxiproxyAPI, proxy: redis.Redis) -> None:
    assert proxy.ping()
    state = api.proxy("r")
    assert state.enabled and state.toxics == ()
    assert set(api.proxies()) == {"r"}


def test_creating_a_proxy_twice_is_refused_with_409(
    api: ToxiproxyAPI, proxy: redis.Redis
) -> None:
    listen = api.proxy("r").listen
    with pytest.raises(ToxiproxyError, match=r"refused POST /proxies: HTTP 409"):
        api.create_proxy("r", listen, "127.0.0.1:1")


def test_an_unknown_proxy_is_404(api: ToxiproxyAPI) -> None:
    with pytest.raises(ToxiproxyError, match=r"refused GET /proxies/nope: HTTP 404"):
        api.proxy("nope")
    with pytest.raises(ToxiproxyError, match=r"PATCH /proxies/nope: HTTP 404"):
        api.set_enabled("nope", False)
    with pytest.raises(ToxiproxyError, match=r"HTTP 404"):
        api.remove_toxic("nope", "latency_downstream")


def test_an_unknown_toxic_type_is_refused_before_any_request(api: ToxiproxyAPI) -> None:
    with pytest.raises(ToxiproxyError, match=r"unknown toxic type 'lag'"):
        api.add_toxic("r", "lag", {})
    with pytest.raises(ToxiproxyError, match=r"stream must be 'upstream'"):
        api.add_toxic("r", "latency", {"latency": 1}, stream="sideways")


def test_a_toxic_name_taken_twice_is_409(api: ToxiproxyAPI, proxy: redis.Redis) -> None:
    api.add_toxic("r", "latency", {"latency": 1}, name="slow")
    with pytest.raises(ToxiproxyError, match=r"HTTP 409"):
        api.add_toxic("r", "latency", {"latency": 1}, name="slow")


def test_disabling_a_proxy_refuses_connections_until_enabled(
    api: ToxiproxyAPI, proxy: redis.Redis
) -> None:
    assert proxy.ping()
    assert api.set_enabled("r", False).enabled is False
    with pytest.raises(redis.ConnectionError):
        proxy.ping()
    assert api.set_enabled("r", True).enabled is True
    assert proxy.ping()


def test_latency_toxic_is_added_updated_and_removed(
    api: ToxiproxyAPI, proxy: redis.Redis
) -> None:
    proxy.ping()
    assert timed_ping(proxy) < 0.1

    toxic = api.add_toxic("r", "latency", {"latency": 200}, name="slow")
    assert toxic["attributes"]["latency"] == 200
    assert timed_ping(proxy) >= 0.19

    updated = api.update_toxic("r", "slow", {"latency": 500})
    assert updated["attributes"]["latency"] == 500
    assert [t["attributes"]["latency"] for t in api.toxics("r")] == [500]
    assert timed_ping(proxy) >= 0.49

    api.remove_toxic("r", "slow")
    assert api.toxics("r") == []
    assert timed_ping(proxy) < 0.1


def test_reset_enables_every_proxy_and_removes_every_toxic(
    api: ToxiproxyAPI, proxy: redis.Redis
) -> None:
    api.add_toxic("r", "latency", {"latency": 300}, stream="upstream")
    api.set_enabled("r", False)

    api.reset()
    state = api.proxy("r")
    assert state.enabled, "reset left the proxy disabled"
    assert state.toxics == (), f"reset left toxics: {state.toxics}"
    assert timed_ping(proxy) < 0.1


def test_a_server_that_never_answers_times_out() -> None:
    # Accepts connections into its backlog and never replies.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        api = ToxiproxyAPI("127.0.0.1", port, timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(ToxiproxyError, match=r"did not answer GET /proxies"):
            api.proxies()
        assert time.monotonic() - t0 < 2.0, "the timeout was not applied"


def test_a_closed_port_is_reported_not_hung() -> None:
    [port] = free_ports(1)
    api = ToxiproxyAPI("127.0.0.1", port, timeout=0.5)
    with pytest.raises(ToxiproxyError, match=rf"127.0.0.1:{port} did not answer"):
        api.reset()
    with pytest.raises(ToxiproxyError, match=r"did not answer"):
        api.wait_ready(0.2)


def test_each_server_keeps_its_own_address(servers: tuple[int, int]) -> None:
    [other] = free_ports(1)
    real = ToxiproxyAPI("127.0.0.1", servers[0])
    wrong = ToxiproxyAPI("127.0.0.1", other, timeout=0.5)
    assert isinstance(real.proxies(), dict)
    with pytest.raises(ToxiproxyError):
        wrong.proxies()

    # `wrong` was made after `real`; `real` must still reach its own server.
    assert real.version(), "the first client lost its server address"
