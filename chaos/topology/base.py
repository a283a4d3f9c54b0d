"""The topology every provider builds: what runs where, and through which proxy.

A topology is PostgreSQL, a Redis master with two replicas, three Sentinels and
one Toxiproxy server, all on loopback. Every link between them passes through
a named Toxiproxy proxy, so a fault can slow, cut or reset any one link.

Each Redis node and each Sentinel has two proxies: `<node>.peer`, which its
peers use (replication, Sentinel monitoring and gossip) and which it announces,
and `<node>.client`, which clients use. Clients learn the announced peer
address from the Sentinels and dial the client proxy of the same node instead
(see `system.redis_client`), so cutting `<node>.peer` isolates a node from the
rest of the topology while its clients still reach it: the split brain.

Providers differ only in how a node's server is launched, killed, paused and
restarted; the layout, the configuration files, the proxies, the health checks
and the clients are shared here.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import logging
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

import psycopg
import redis
from psycopg import sql
from redis.asyncio import Redis as AsyncRedis

from chaos import process
from chaos.errors import ConfigurationError, HarnessError, StartupError
from chaos.toxiproxy import ToxiproxyAPI
from system.redis_client import RedisSettings, master_client

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
NodeKind = Literal["redis", "sentinel", "postgres", "toxiproxy"]

REDIS_NODES = ("redis-1", "redis-2", "redis-3")
SENTINEL_NODES = ("sentinel-1", "sentinel-2", "sentinel-3")


@dataclass(frozen=True)
class TopologyOptions:
    """What a topology should look like. The defaults are the tested ones."""

    master_name: str = "bullproof"
    redis_password: str = field(default_factory=lambda: secrets.token_hex(12))
    postgres_password: str = field(default_factory=lambda: secrets.token_hex(12))
    postgres_user: str = "bullproof"
    postgres_db: str = "bullproof"
    quorum: int = 2
    down_after_ms: int = 1000
    failover_timeout_ms: int = 5000
    maxmemory: str = "256mb"
    maxmemory_policy: str = "noeviction"
    min_replicas_to_write: int = 0
    min_replicas_max_lag: int = 10
    start_timeout_s: float = 30.0
    extra_redis_config: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.quorum <= len(SENTINEL_NODES):
            raise ConfigurationError(
                f"quorum must be between 1 and {len(SENTINEL_NODES)}, got {self.quorum}"
            )
        if self.down_after_ms < 100:
            raise ConfigurationError(
                f"down_after_ms must be >= 100, got {self.down_after_ms}"
            )
        if self.failover_timeout_ms < self.down_after_ms:
            raise ConfigurationError(
                f"failover_timeout_ms ({self.failover_timeout_ms}) must be >= "
                f"down_after_ms ({self.down_after_ms})"
            )
        if not self.redis_password or any(c.isspace() for c in self.redis_password):
            raise ConfigurationError("redis_password must be non-empty, no spaces")
        if self.start_timeout_s <= 0:
            raise ConfigurationError("start_timeout_s must be > 0")


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Node:
    """One server of the topology, at the address it really listens on."""

    name: str
    kind: NodeKind
    address: Address


@dataclass(frozen=True)
class Link:
    """A named Toxiproxy proxy that leads to `node`; `role` is peer or client."""

    name: str
    node: str
    role: Literal["peer", "client"]
    listen: Address
    upstream: Address


RUN_DIR_PREFIX = "bullproof-"


def _sweep_orphaned_run_dirs() -> None:
    """Remove run dirs whose owner died without cleaning up (SIGKILL, say)."""
    for path in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}*"):
        try:
            owner = int((path / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not process.is_alive(owner):
            logger.info("removing %s, left by dead process %s", path, owner)
            shutil.rmtree(path, ignore_errors=True)


def cache_dir() -> Path:
    """Where initialised PostgreSQL templates are kept between runs."""
    root = os.environ.get("BULLPROOF_CACHE") or os.path.join(
        tempfile.gettempdir(), f"bullproof-cache-{os.getuid()}"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free on loopback a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Topology(abc.ABC):
    """PostgreSQL, Redis with Sentinel and Toxiproxy, every link behind a proxy.

    Use it as a context manager, or call `start()` and `stop()`; `stop()` is
    safe to call more than once and after a failed start.
    """

    provider: str = "abstract"

    def __init__(self, options: TopologyOptions | None = None):
        self.options = options or TopologyOptions()
        self.nodes: dict[str, Node] = {}
        self.links: dict[str, Link] = {}
        self.run_dir: Path | None = None
        self._toxiproxy: ToxiproxyAPI | None = None
        self._started = False
        self._paused: set[str] = set()

    # -- the provider's part ------------------------------------------------

    @abc.abstractmethod
    def _launch(self, node: Node) -> None:
        """Start the server of `node` with the files in its node directory."""

    @abc.abstractmethod
    def _kill(self, node: Node) -> None:
        """Stop the server of `node` at once (SIGKILL or its equivalent)."""

    @abc.abstractmethod
    def _signal_pause(self, node: Node, paused: bool) -> None:
        """Freeze (SIGSTOP) or thaw (SIGCONT) the server of `node`."""

    @abc.abstractmethod
    def is_running(self, name: str) -> bool:
        """Whether the server of node `name` is alive (paused counts as alive)."""

    @abc.abstractmethod
    def _prepare_postgres(self, node_dir: Path) -> None:
        """Put an initialised PostgreSQL data directory at `node_dir / 'data'`."""

    def _cleanup(self) -> None:  # noqa: B027 - optional hook
        """Provider clean-up after every node is stopped."""

    # -- layout --------------------------------------------------------------

    def node_dir(self, name: str) -> Path:
        assert self.run_dir is not None, "topology not started"
        return self.run_dir / name

    def _plan(self) -> None:
        names: list[tuple[str, NodeKind]] = [("toxiproxy", "toxiproxy")]
        names += [("postgres", "postgres")]
        names += [(n, "redis") for n in REDIS_NODES]
        names += [(n, "sentinel") for n in SENTINEL_NODES]
        proxied = [n for n, kind in names if kind in ("redis", "sentinel")]
        ports = free_ports(len(names) + 2 * len(proxied) + 1)

        for name, kind in names:
            self.nodes[name] = Node(name, kind, Address(LOOPBACK, ports.pop()))
        for name in proxied:
            for role in ("peer", "client"):
                link = f"{name}.{role}"
                self.links[link] = Link(
                    link,
                    name,
                    role,
                    Address(LOOPBACK, ports.pop()),
                    self.nodes[name].address,
                )
        self.links["postgres.client"] = Link(
            "postgres.client",
            "postgres",
            "client",
            Address(LOOPBACK, ports.pop()),
            self.nodes["postgres"].address,
        )

    def peer(self, name: str) -> Address:
        return self.links[f"{name}.peer"].listen

    def node_by_peer_port(self, port: int) -> str:
        for link in self.links.values():
            if link.role == "peer" and link.listen.port == port:
                return link.node
        raise HarnessError(f"no node announces peer port {port}")

    # -- configuration files -------------------------------------------------

    def redis_config(self, name: str) -> str:
        o = self.options
        lines = [
            f"bind {LOOPBACK}",
            f"port {self.nodes[name].address.port}",
            "daemonize no",
            'logfile ""',
            f"dir {self.node_dir(name)}",
            "appendonly yes",
            "appendfsync everysec",
            "save 900 1",
            "save 300 10",
            "save 60 10000",
            f"maxmemory {o.maxmemory}",
            f"maxmemory-policy {o.maxmemory_policy}",
            f"requirepass {o.redis_password}",
            f"masterauth {o.redis_password}",
            f"replica-announce-ip {LOOPBACK}",
            f"replica-announce-port {self.peer(name).port}",
            # The default 5 s wait before the first full sync is a window in
            # which a failover would promote an empty replica.
            "repl-diskless-sync-delay 0",
            f"min-replicas-to-write {o.min_replicas_to_write}",
            f"min-replicas-max-lag {o.min_replicas_max_lag}",
            "enable-debug-command local",
        ]
        lines += [f"{k} {v}" for k, v in o.extra_redis_config]
        if name != REDIS_NODES[0]:
            lines.append(f"replicaof {LOOPBACK} {self.peer(REDIS_NODES[0]).port}")
        return "\n".join(lines) + "\n"

    def sentinel_config(self, name: str, ids: dict[str, str]) -> str:
        o = self.options
        m = o.master_name
        lines = [
            f"bind {LOOPBACK}",
            f"port {self.nodes[name].address.port}",
            "daemonize no",
            'logfile ""',
            f"dir {self.node_dir(name)}",
            f"sentinel myid {ids[name]}",
            f"sentinel announce-ip {LOOPBACK}",
            f"sentinel announce-port {self.peer(name).port}",
            "sentinel resolve-hostnames no",
            f"requirepass {o.redis_password}",
            f"sentinel sentinel-pass {o.redis_password}",
            f"sentinel monitor {m} {LOOPBACK} {self.peer(REDIS_NODES[0]).port} "
            f"{o.quorum}",
            f"sentinel auth-pass {m} {o.redis_password}",
            f"sentinel down-after-milliseconds {m} {o.down_after_ms}",
            f"sentinel failover-timeout {m} {o.failover_timeout_ms}",
            f"sentinel parallel-syncs {m} 1",
        ]

        # Pre-wired peers: Sentinels left to discover each other need about
        # ten seconds before they can agree on a failover.
        for replica in REDIS_NODES[1:]:
            lines.append(
                f"sentinel known-replica {m} {LOOPBACK} {self.peer(replica).port}"
            )
        for other in SENTINEL_NODES:
            if other != name:
                lines.append(
                    f"sentinel known-sentinel {m} {LOOPBACK} "
                    f"{self.peer(other).port} {ids[other]}"
                )
        return "\n".join(lines) + "\n"

    def postgres_args(self, node: Node) -> list[str]:
        """The PostgreSQL server's arguments: its data dir and settings."""
        d = self.node_dir(node.name)
        settings = {
            "listen_addresses": node.address.host,
            "port": str(node.address.port),
            "unix_socket_directories": str(d / "socket"),
            # Durability of PostgreSQL is not under test; speed is wanted.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            "cluster_name": f"bullproof-{self.options.master_name}",
        }
        args = ["-D", str(d / "data")]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def _write_configs(self) -> None:
        ids = {name: secrets.token_hex(20) for name in SENTINEL_NODES}
        for name in REDIS_NODES:
            (self.node_dir(name) / "redis.conf").write_text(self.redis_config(name))
        for name in SENTINEL_NODES:
            path = self.node_dir(name) / "sentinel.conf"
            path.write_text(self.sentinel_config(name, ids))

    # -- life cycle ----------------------------------------------------------

    def __enter__(self) -> Topology:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start every node and proxy, and return once the topology is healthy."""
        if self._started:
            raise HarnessError("topology already started; stop() it first")
        self._started = True

        # On an exit that skips the caller's clean-up (Ctrl-C outside a
        # fixture, sys.exit), still stop the servers and remove the run dir.
        atexit.register(self._stop_at_exit)
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "%s topology healthy in %.2f s (master %s, run dir %s)",
            self.provider,
            time.monotonic() - t0,
            self.options.master_name,
            self.run_dir,
        )

    def _make_run_dir(self) -> Path:
        _sweep_orphaned_run_dirs()
        path = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))
        (path / "owner.pid").write_text(f"{os.getpid()}\n")

        # PostgreSQL runs as an unprivileged user, who must reach its data dir.
        path.chmod(0o755)
        return path

    def _start(self) -> None:
        self.run_dir = self._make_run_dir()
        self._plan()
        for name in self.nodes:
            self.node_dir(name).mkdir(mode=0o755)
        self._write_configs()
        self._prepare_postgres(self.node_dir("postgres"))

        # Proxies first, so that replicas and Sentinels find their peers.
        self._launch(self.nodes["toxiproxy"])
        self.toxiproxy.wait_ready(self.options.start_timeout_s)
        for link in self.links.values():
            self.toxiproxy.create_proxy(link.name, str(link.listen), str(link.upstream))

        for name, node in self.nodes.items():
            if name != "toxiproxy":
                self._launch(node)
        self.wait_healthy(self.options.start_timeout_s)

    def _stop_at_exit(self) -> None:
        if self._started:
            with contextlib.suppress(Exception):
                self.stop()

    def stop(self) -> None:
        """Stop every node this topology started and remove its files."""
        atexit.unregister(self._stop_at_exit)
        errors = []
        for name in reversed(list(self.nodes)):
            try:
                self._kill(self.nodes[name])
            except Exception as exc:  # gather, then report once
                errors.append(f"{name}: {exc!r}")
        try:
            self._cleanup()
        except Exception as exc:
            errors.append(f"cleanup: {exc!r}")
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self._started = False
        if errors:
            raise HarnessError("stopping the topology failed: " + "; ".join(errors))

    # -- node control (used by faults) -------------------------------------------

    def kill(self, name: str) -> None:
        """SIGKILL node `name`. Its files stay, so `restart` brings it back."""
        self._require(name)
        self._kill(self.nodes[name])
        logger.info("killed %s", name)

    def restart(self, name: str, *, rejoin: bool = True) -> None:
        """Start node `name` again from its files (config, AOF, RDB).

        With `rejoin`, a Redis node that is no longer the master is pointed at
        the current one first, as an orchestrator would; left alone, it would
        come back as a stale master until the Sentinels convert it, about ten
        seconds later. `rejoin=False` restarts it exactly as its files say.
        """
        self._require(name)
        if self.is_running(name):
            raise HarnessError(f"cannot restart {name}: it is still running")
        node = self.nodes[name]
        if rejoin and node.kind == "redis":
            with contextlib.suppress(HarnessError):
                master = self.current_master()
                if master != name:
                    self._point_at(name, master)
        self._launch(node)
        logger.info("restarted %s", name)

    def _point_at(self, name: str, master: str) -> None:
        path = self.node_dir(name) / "redis.conf"
        kept = [
            line
            for line in path.read_text().splitlines()
            if not line.startswith(("replicaof ", "slaveof "))
        ]
        kept.append(f"replicaof {LOOPBACK} {self.peer(master).port}")
        path.write_text("\n".join(kept) + "\n")

    def pause(self, name: str) -> None:
        self._require(name)
        self._signal_pause(self.nodes[name], True)
        self._paused.add(name)
        logger.info("paused %s", name)

    def resume(self, name: str) -> None:
        self._require(name)
        self._signal_pause(self.nodes[name], False)
        self._paused.discard(name)
        logger.info("resumed %s", name)

    def heal(self, timeout: float | None = None) -> list[str]:
        """Undo every fault: enable all proxies, remove all toxics, resume paused
        nodes, restart dead ones, and wait until healthy. Returns what it did."""
        done = []
        self.toxiproxy.reset()
        for name in sorted(self._paused):
            self.resume(name)
            done.append(f"resumed {name}")
        for name, node in self.nodes.items():
            if not self.is_running(name):
                if node.kind == "toxiproxy":
                    raise HarnessError("toxiproxy is not running; cannot heal")
                self.restart(name)
                done.append(f"restarted {name}")
        done += self._demote_stale_masters()
        self.wait_healthy(timeout or self.options.start_timeout_s)
        if done:
            logger.info("healed: %s", ", ".join(done))
        return done

    def _demote_stale_masters(self) -> list[str]:
        """Point a node that still thinks it is master (cut off while the
        Sentinels promoted another) at the real one, as an orchestrator would;
        the Sentinels alone take ten seconds or more to convert it."""
        with contextlib.suppress(HarnessError):
            master = self.wait_for_master(timeout=self.options.start_timeout_s)
            demoted = []
            for name in REDIS_NODES:
                if name == master:
                    continue
                with contextlib.suppress(redis.RedisError), self.admin(name) as node:
                    if node.info("replication").get("role") == "master":
                        node.execute_command(
                            "REPLICAOF", LOOPBACK, str(self.peer(master).port)
                        )
                        node.execute_command("CONFIG", "REWRITE")
                        demoted.append(f"demoted {name}")
            return demoted
        return []

    def _require(self, name: str) -> None:
        if name not in self.nodes:
            raise ConfigurationError(
                f"unknown node {name!r}; this topology has {sorted(self.nodes)}"
            )

    # -- clients -------------------------------------------------------------

    @property
    def toxiproxy(self) -> ToxiproxyAPI:
        if self._toxiproxy is None:
            address = self.nodes["toxiproxy"].address
            self._toxiproxy = ToxiproxyAPI(address.host, address.port)
        return self._toxiproxy

    def add_client(self, client: str) -> RedisSettings:
        """Give `client` (a worker, say) proxies of its own to every Redis node
        and Sentinel, named `<node>.client.<client>`, so that a fault can cut
        that one client alone. Returns the settings that use them."""
        if not client or not all(c.isalnum() or c in "-_" for c in client):
            raise ConfigurationError(
                f"client name {client!r} must be letters, digits, '-' or '_'"
            )
        wanted = [
            (f"{name}.client.{client}", name) for name in REDIS_NODES + SENTINEL_NODES
        ]
        missing = [(link, name) for link, name in wanted if link not in self.links]
        for (link, name), port in zip(missing, free_ports(len(missing)), strict=True):
            new = Link(
                link, name, "client", Address(LOOPBACK, port), self.nodes[name].address
            )
            self.toxiproxy.create_proxy(link, str(new.listen), str(new.upstream))
            self.links[link] = new
        return self.redis_settings(client)

    def client_links(self, client: str) -> list[str]:
        """The names of the proxies that `add_client(client)` made."""
        return [n for n in self.links if n.endswith(f".client.{client}")]

    def redis_settings(self, client: str | None = None) -> RedisSettings:
        """How the system reaches Redis: Sentinels and nodes via client proxies.

        With `client`, through the proxies that `add_client(client)` made."""
        suffix = "client" if client is None else f"client.{client}"
        for name in REDIS_NODES + SENTINEL_NODES:
            if f"{name}.{suffix}" not in self.links:
                raise ConfigurationError(
                    f"no proxies for client {client!r}; call add_client() first"
                )
        address_map = {
            str(self.peer(name)): str(self.links[f"{name}.{suffix}"].listen)
            for name in REDIS_NODES
        }
        sentinels = tuple(
            (LOOPBACK, self.links[f"{name}.{suffix}"].listen.port)
            for name in SENTINEL_NODES
        )
        return RedisSettings(
            sentinels=sentinels,
            master_name=self.options.master_name,
            password=self.options.redis_password,
            sentinel_password=self.options.redis_password,
            address_map=address_map,
        )

    def redis_client(self, client: str | None = None) -> AsyncRedis:
        """A new asyncio client of the current master, for one caller alone."""
        return master_client(self.redis_settings(client))

    def admin(self, name: str, timeout: float = 1.0) -> redis.Redis:
        """A synchronous client straight to node `name`, bypassing every proxy."""
        self._require(name)
        address = self.nodes[name].address
        return redis.Redis(
            host=address.host,
            port=address.port,
            password=self.options.redis_password,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    @property
    def postgres_dsn(self) -> str:
        """The DSN the system uses: through the `postgres.client` proxy."""
        return self._dsn(self.links["postgres.client"].listen)

    @property
    def postgres_admin_dsn(self) -> str:
        """A DSN straight to PostgreSQL, for checkers that must see past faults."""
        return self._dsn(self.nodes["postgres"].address)

    def _dsn(self, address: Address) -> str:
        o = self.options
        return (
            f"postgresql://{o.postgres_user}:{o.postgres_password}@"
            f"{address.host}:{address.port}/{o.postgres_db}"
        )

    # -- health ----------------------------------------------------------------

    def sentinel_masters(self) -> dict[str, str | None]:
        """Which node each Sentinel names as master (None when it does not answer)."""
        seen: dict[str, str | None] = {}
        for name in SENTINEL_NODES:
            try:
                with self.admin(name, timeout=0.5) as client:
                    addr = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.options.master_name
                    )
                seen[name] = self.node_by_peer_port(int(addr[1])) if addr else None
            except (redis.RedisError, HarnessError):
                seen[name] = None
        return seen

    def current_master(self) -> str:
        """The node most Sentinels name as master (at least a quorum of them)."""
        votes: dict[str, int] = {}
        for master in self.sentinel_masters().values():
            if master is not None:
                votes[master] = votes.get(master, 0) + 1
        if votes:
            best = max(votes, key=lambda k: votes[k])
            if votes[best] >= self.options.quorum:
                return best
        raise HarnessError(f"the Sentinels do not agree on a master: {votes}")

    def health_problems(self) -> list[str]:
        """Everything that keeps the topology from being healthy; empty if healthy."""
        problems: list[str] = []
        try:
            self.toxiproxy.version()
        except HarnessError as exc:
            problems.append(f"toxiproxy: {exc}")
        problems += self._postgres_problems()

        masters = self.sentinel_masters()
        named = set(masters.values())
        if None in named or len(named) != 1:
            problems.append(f"sentinels do not agree on one master: {masters}")
            return problems
        master = named.pop()
        assert master is not None
        problems += self._sentinel_problems(master)
        problems += self._replication_problems(master)
        return problems

    def _postgres_problems(self) -> list[str]:
        try:
            with psycopg.connect(self.postgres_admin_dsn, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return [f"postgres: {str(exc).strip()}"]
        return []

    def _sentinel_problems(self, master: str) -> list[str]:
        problems = []
        for name in SENTINEL_NODES:
            try:
                with self.admin(name, timeout=0.5) as client:
                    info = client.execute_command(
                        "SENTINEL", "MASTER", self.options.master_name
                    )
                    replicas = client.execute_command(
                        "SENTINEL", "REPLICAS", self.options.master_name
                    )
            except redis.RedisError as exc:
                problems.append(f"{name}: {exc}")
                continue
            info = _pairs(info)
            if info.get("flags") != "master":
                problems.append(f"{name} sees master {master} as {info.get('flags')}")
            if int(info.get("num-other-sentinels", 0)) != len(SENTINEL_NODES) - 1:
                problems.append(
                    f"{name} knows {info.get('num-other-sentinels')} other sentinels"
                )
            good = [
                r
                for r in map(_pairs, replicas)
                if r.get("flags") == "slave" and r.get("master-link-status") == "ok"
            ]
            if len(good) != len(REDIS_NODES) - 1:
                problems.append(
                    f"{name} sees {len(good)} healthy replicas, expected "
                    f"{len(REDIS_NODES) - 1}"
                )
        return problems

    def _replication_problems(self, master: str) -> list[str]:
        problems = []
        for name in REDIS_NODES:
            try:
                with self.admin(name, timeout=0.5) as client:
                    info = client.info("replication")
            except redis.RedisError as exc:
                problems.append(f"{name}: {exc}")
                continue
            if name == master:
                if info.get("role") != "master":
                    problems.append(f"{name} should be master, is {info.get('role')}")
            elif info.get("role") != "slave":
                problems.append(f"{name} should be a replica, is {info.get('role')}")
            elif info.get("master_link_status") != "up":
                problems.append(
                    f"{name}: link to master is {info.get('master_link_status')}"
                )
            elif info.get("master_port") != self.peer(master).port:
                problems.append(
                    f"{name} replicates from port {info.get('master_port')}, "
                    f"not {master}"
                )
        return problems

    def wait_healthy(self, timeout: float) -> None:
        """Block until `health_problems()` is empty; raise naming what is wrong."""
        deadline = time.monotonic() + timeout
        while True:
            problems = self.health_problems()
            if not problems:
                return
            dead = [n for n in self.nodes if not self.is_running(n)]
            if dead or time.monotonic() > deadline:
                detail = "; ".join(problems)
                if dead:
                    detail = (
                        f"not running: {', '.join(dead)} ({self._log_hint()}); "
                        + detail
                    )
                raise StartupError(
                    f"{self.provider} topology not healthy after "
                    f"{timeout:.0f} s: {detail}"
                )
            time.sleep(0.02)

    def _log_tail(self, name: str, chars: int) -> str:
        if self.run_dir is None:
            return ""
        log = self.node_dir(name) / "server.log"
        return log.read_text()[-chars:].strip() if log.exists() else ""

    def _log_hint(self) -> str:
        tails = [
            f"{name}: {self._log_tail(name, 400)}"
            for name in self.nodes
            if not self.is_running(name) and self._log_tail(name, 1)
        ]
        return " | ".join(tails) or f"logs in {self.run_dir}"

    def _after_postgres_start(self, node: Node) -> None:
        """Wait for PostgreSQL, then give it this run's database and password:
        the initialised template it started from has generic ones."""
        o = self.options
        sock = self.node_dir(node.name) / "socket"
        dsn = (
            f"host={sock} port={node.address.port} user={o.postgres_user} "
            "dbname=postgres"
        )
        deadline = time.monotonic() + o.start_timeout_s
        while True:
            try:
                conn = psycopg.connect(dsn, autocommit=True, connect_timeout=1)
                break
            except psycopg.OperationalError as exc:
                if not self.is_running(node.name):
                    raise StartupError(
                        f"postgres exited: {self._log_tail(node.name, 2000)}"
                    ) from exc
                if time.monotonic() > deadline:
                    raise StartupError(
                        f"postgres did not accept connections: {exc}"
                    ) from exc
                time.sleep(0.01)
        with conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (o.postgres_db,)
            ).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(o.postgres_db))
                )
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(o.postgres_user), sql.Literal(o.postgres_password)
                )
            )

    def settled_master(self) -> str | None:
        """The master, if every Sentinel names it, no failover is under way and
        the node itself says it is master; otherwise None."""
        masters = set(self.sentinel_masters().values())
        if len(masters) != 1 or None in masters:
            return None
        master = masters.pop()
        assert master is not None
        for name in SENTINEL_NODES:
            try:
                with self.admin(name, timeout=0.5) as client:
                    info = _pairs(
                        client.execute_command(
                            "SENTINEL", "MASTER", self.options.master_name
                        )
                    )
            except redis.RedisError:
                return None
            if info.get("flags") != "master":
                return None
        try:
            with self.admin(master, timeout=0.5) as client:
                if client.info("replication").get("role") != "master":
                    return None
        except redis.RedisError:
            return None
        return master

    def wait_for_master(
        self, not_name: str | None = None, timeout: float = 30.0
    ) -> str:
        """Wait until the Sentinels settle on a master other than `not_name`.

        Settled means every Sentinel names it and none is failing over: with a
        one-second down-after, a freshly promoted master can itself be judged
        down and replaced, so the first name the Sentinels give is not final.
        """
        deadline = time.monotonic() + timeout
        while True:
            master = self.settled_master()
            if master is not None and master != not_name:
                return master
            if time.monotonic() > deadline:
                raise StartupError(
                    f"no settled master other than {not_name} within {timeout:.0f} s "
                    f"(sentinels say {self.sentinel_masters()})"
                )
            time.sleep(0.02)

    def processes(self) -> Iterator[tuple[str, int]]:
        """(node, pid) for each running server, where the provider knows pids."""
        return iter(())


def _pairs(flat: list[str] | dict[str, str]) -> dict[str, str]:
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))
