"""The `local` provider: every node a child process of the test run.

Needs only binaries on the machine (Debian's redis-server, redis-sentinel and
PostgreSQL, and the Toxiproxy server that `make setup` builds); no Docker. The
children die with the run, also when it is killed with SIGKILL (see
`chaos.process`).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from chaos import process
from chaos.errors import ConfigurationError, MissingBinaryError, StartupError
from chaos.topology.base import Node, Topology, TopologyOptions, cache_dir

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_USER = "postgres"


def _find(name: str, env: str, candidates: list[str], hint: str) -> str:
    override = os.environ.get(env)
    if override:
        if not os.access(override, os.X_OK):
            raise ConfigurationError(f"{env}={override} is not an executable file")
        return override
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return found
    raise MissingBinaryError(f"{name} not found ({hint}; or set {env})")


def postgres_bindir() -> Path:
    """Where Debian put PostgreSQL's server binaries (the newest version)."""
    override = os.environ.get("BULLPROOF_PG_BINDIR")
    if override:
        return Path(override)
    dirs = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0,
    )
    for d in reversed(dirs):
        if os.access(Path(d) / "postgres", os.X_OK):
            return Path(d)
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise MissingBinaryError(
        "PostgreSQL server not found (run `make setup`, or apt-get install "
        "postgresql; or set BULLPROOF_PG_BINDIR)"
    )


def binaries() -> dict[str, str]:
    """Every program the local provider runs; raises naming the first missing."""
    pg = postgres_bindir()
    return {
        "redis-server": _find(
            "redis-server",
            "BULLPROOF_REDIS_SERVER",
            ["/usr/bin/redis-server"],
            "run `make setup`, or apt-get install redis-server",
        ),
        "redis-sentinel": _find(
            "redis-sentinel",
            "BULLPROOF_REDIS_SENTINEL",
            ["/usr/bin/redis-sentinel"],
            "run `make setup`, or apt-get install redis-sentinel",
        ),
        "toxiproxy-server": _find(
            "toxiproxy-server",
            "BULLPROOF_TOXIPROXY",
            [str(PROJECT_ROOT / ".tools" / "bin" / "toxiproxy-server")],
            "run `make setup`, which builds it with go install",
        ),
        "postgres": str(pg / "postgres"),
        "initdb": str(pg / "initdb"),
    }


class LocalTopology(Topology):
    provider = "local"

    def __init__(self, options: TopologyOptions | None = None):
        super().__init__(options)
        self.bin = binaries()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._pg_user = POSTGRES_USER if os.geteuid() == 0 else None
        if self._pg_user is not None:
            try:
                process.user_ids(self._pg_user)
            except KeyError as exc:
                raise ConfigurationError(
                    "running as root, PostgreSQL must run as the unprivileged "
                    f"user {POSTGRES_USER!r}, which does not exist (apt-get "
                    "install postgresql creates it)"
                ) from exc

    # -- PostgreSQL data directory -----------------------------------------------

    def _template(self) -> Path:
        """An initialised data directory, made once and copied for each run."""
        o = self.options
        version = Path(self.bin["postgres"]).parent.parent.name
        template = cache_dir() / f"pg-{version}-{o.postgres_user}"
        if (template / "PG_VERSION").exists():
            return template

        staging = Path(tempfile.mkdtemp(prefix="pg-template-", dir=cache_dir()))
        staging.chmod(0o755)
        data = staging / "data"
        pwfile = staging / "pw"
        pwfile.write_text("initial\n")
        if self._pg_user:
            uid, gid = process.user_ids(self._pg_user)
            os.chown(staging, uid, gid)
            os.chown(pwfile, uid, gid)
        argv = [
            self.bin["initdb"],
            "--no-sync",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--username={o.postgres_user}",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--no-instructions",
            "-D",
            str(data),
        ]
        log = staging / "initdb.log"
        proc = process.spawn(argv, log_path=log, user=self._pg_user)
        if proc.wait(120) != 0:
            raise StartupError(f"initdb failed: {log.read_text()[-2000:]}")
        with contextlib.suppress(FileExistsError, OSError):
            data.rename(template)
        shutil.rmtree(staging, ignore_errors=True)
        return template

    def _prepare_postgres(self, node_dir: Path) -> None:
        template = self._template()
        data = node_dir / "data"
        subprocess.run(["cp", "-a", str(template), str(data)], check=True)
        (node_dir / "socket").mkdir(mode=0o755)
        if self._pg_user:
            uid, gid = process.user_ids(self._pg_user)
            for path in (node_dir, node_dir / "socket"):
                os.chown(path, uid, gid)

    # -- processes -------------------------------------------------------------

    def _argv(self, node: Node) -> tuple[list[str], str | None]:
        d = self.node_dir(node.name)
        port = str(node.address.port)
        if node.kind == "toxiproxy":
            server = self.bin["toxiproxy-server"]
            return [server, "-host", node.address.host, "-port", port], None
        if node.kind == "redis":
            return [self.bin["redis-server"], str(d / "redis.conf")], None
        if node.kind == "sentinel":
            return [self.bin["redis-sentinel"], str(d / "sentinel.conf")], None
        return [self.bin["postgres"], *self.postgres_args(node)], self._pg_user

    def _launch(self, node: Node) -> None:
        argv, user = self._argv(node)
        log = self.node_dir(node.name) / "server.log"
        # The node dir as working directory marks the process as this run's
        # for leftover checks, whatever it renames itself to.
        self._procs[node.name] = process.spawn(
            argv, log_path=log, user=user, cwd=self.node_dir(node.name)
        )
        if node.kind == "postgres":
            self._after_postgres_start(node)

    def _kill(self, node: Node) -> None:
        proc = self._procs.pop(node.name, None)
        if proc is not None:
            # A stopped process must be continued for SIGKILL to reap it fast.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)
            process.kill(proc)

    def _signal_pause(self, node: Node, paused: bool) -> None:
        proc = self._procs.get(node.name)
        if proc is None or proc.poll() is not None:
            raise StartupError(f"cannot pause or resume {node.name}: not running")
        os.killpg(proc.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def is_running(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def processes(self) -> Iterator[tuple[str, int]]:
        for name, proc in self._procs.items():
            if proc.poll() is None:
                yield name, proc.pid
