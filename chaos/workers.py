"""Starting and controlling the system's worker processes for tests and faults.

Each worker is an OS process (`python -m system.worker`) started with
`chaos.process.spawn`, so it dies with the test run. A fault can stop it
gracefully, kill it, freeze it past its lock (SIGSTOP) and thaw it, or
restart it. A worker prints a READY line once it consumes its queue; `start`
waits for that line rather than sleeping.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

from chaos import process
from chaos.errors import ConfigurationError, HarnessError, StartupError
from chaos.topology import Topology
from system import config
from system.redis_client import RedisSettings

logger = logging.getLogger(__name__)

DEFAULT_LOCK_DURATION_MS = 10_000
READY_TIMEOUT_S = 30.0
_counter = itertools.count(1)


def _log_dir(topology: Topology) -> Path:
    base = topology.run_dir or Path(tempfile.gettempdir())
    path = base / "workers"
    path.mkdir(parents=True, exist_ok=True)
    return path


class WorkerProcess:
    """One `system.worker` process, bound to one queue."""

    def __init__(
        self,
        name: str,
        queue: str,
        *,
        settings: RedisSettings,
        pg_dsn: str,
        log_path: Path,
        concurrency: int = 10,
        lock_duration_ms: int = DEFAULT_LOCK_DURATION_MS,
        preload: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.queue = config.queue_name(queue)
        self.settings = settings
        self.pg_dsn = pg_dsn
        self.log_path = log_path
        self.concurrency = concurrency
        self.lock_duration_ms = lock_duration_ms
        self.preload = tuple(preload)
        self.extra_env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"WorkerProcess({self.name!r}, {self.queue!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def is_running(self) -> bool:
        """Alive (a paused worker counts as alive)."""
        return self._proc is not None and self._proc.poll() is None

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "system.worker",
            "--queue",
            self.queue,
            "--name",
            self.name,
            "--concurrency",
            str(self.concurrency),
            "--lock-duration-ms",
            str(self.lock_duration_ms),
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env[config.ENV_REDIS] = self.settings.to_json()
        env[config.ENV_PG_DSN] = self.pg_dsn
        if self.preload:
            env[config.ENV_PRELOAD] = ",".join(self.preload)
        env.update(self.extra_env)
        return env

    def launch(self) -> None:
        """Start the process without waiting for it to be ready."""
        if self.is_running:
            raise StartupError(
                f"worker {self.name} is already running (pid {self.pid})"
            )
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._proc = process.spawn(
            self.argv(), log_path=self.log_path, env=self.environment()
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until the worker printed its READY line; raise if it died."""
        marker = f"READY {self.name} ".encode()
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                if any(line.startswith(marker) for line in log):
                    logger.info(
                        "worker %s ready on %s (pid %s)",
                        self.name,
                        self.queue,
                        self.pid,
                    )
                    return
            if not self.is_running:
                raise StartupError(
                    f"worker {self.name} exited before it was ready: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise StartupError(
                    f"worker {self.name} not ready after {timeout:.0f} s: "
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise HarnessError(f"worker {self.name} is not running; start() it first")
        os.kill(self._proc.pid, sig)

    def request_stop(self) -> None:
        """Send SIGTERM without waiting. A paused worker is resumed first, or
        it could not act on the SIGTERM."""
        if self._proc is None or self._proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._proc.pid, signal.SIGCONT)
            os.kill(self._proc.pid, signal.SIGTERM)

    def wait_stopped(self, grace: float = 5.0) -> None:
        """Wait up to `grace` seconds for the exit, then SIGKILL."""
        if self._proc is None:
            return
        try:
            self._proc.wait(grace)
        except subprocess.TimeoutExpired:
            logger.warning("worker %s ignored SIGTERM for %.1f s", self.name, grace)
        # Also reaps, and kills anything the worker left in its session.
        process.kill(self._proc)
        logger.info("stopped worker %s (exit %s)", self.name, self._proc.returncode)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        self.request_stop()
        self.wait_stopped(grace)

    def kill(self) -> None:
        """SIGKILL: the jobs in hand stay active until their locks expire."""
        if self._proc is None:
            return
        process.kill(self._proc)
        logger.info("killed worker %s", self.name)

    def pause(self) -> None:
        """SIGSTOP: the worker holds its jobs but renews no lock."""
        self._signal(signal.SIGSTOP)
        logger.info("paused worker %s", self.name)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        logger.info("resumed worker %s", self.name)

    def restart(self) -> None:
        """Kill the worker if it is still running, then start it again."""
        if self.is_running:
            self.kill()
        self.start()
        logger.info("restarted worker %s", self.name)


def make_worker(
    topology: Topology,
    queue: str,
    *,
    name: str | None = None,
    concurrency: int = 10,
    lock_duration_ms: int = DEFAULT_LOCK_DURATION_MS,
    own_links: bool = False,
    preload: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> WorkerProcess:
    """A worker for `queue` on `topology`, not started yet."""
    full = config.queue_name(queue)
    name = name or f"{config.short_queue_name(full)}-w{next(_counter)}"
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
    settings = topology.add_client(name) if own_links else topology.redis_settings()
    return WorkerProcess(
        name,
        full,
        settings=settings,
        pg_dsn=topology.postgres_dsn,
        log_path=_log_dir(topology) / f"{name}.log",
        concurrency=concurrency,
        lock_duration_ms=lock_duration_ms,
        preload=preload,
        env=env,
    )


def spawn_worker(
    topology: Topology,
    queue: str,
    *,
    name: str | None = None,
    concurrency: int = 10,
    lock_duration_ms: int = DEFAULT_LOCK_DURATION_MS,
    own_links: bool = False,
    preload: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> WorkerProcess:
    """Start a worker for `queue` and return once it is ready.

    With `own_links`, the worker reaches Redis through proxies of its own
    (`topology.add_client(name)`), so a partition can cut this worker alone.
    """
    worker = make_worker(
        topology,
        queue,
        name=name,
        concurrency=concurrency,
        lock_duration_ms=lock_duration_ms,
        own_links=own_links,
        preload=preload,
        env=env,
    )
    worker.start()
    return worker


class WorkerPool:
    """Workers for several queues, started together and stopped together.

    `counts` maps a queue (short or full name) to how many workers it gets;
    the default is one worker for each queue the order pipeline uses.
    """

    DEFAULT_COUNTS: Mapping[str, int] = {
        "inventory": 1,
        "billing": 1,
        "general": 1,
        "critical": 1,
    }

    def __init__(
        self,
        topology: Topology,
        counts: Mapping[str, int] | None = None,
        *,
        concurrency: int = 10,
        lock_duration_ms: int = DEFAULT_LOCK_DURATION_MS,
        own_links: bool = False,
        preload: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        self.topology = topology
        self.workers: list[WorkerProcess] = []
        for queue, count in (counts or self.DEFAULT_COUNTS).items():
            for _ in range(count):
                self.workers.append(
                    make_worker(
                        topology,
                        queue,
                        concurrency=concurrency,
                        lock_duration_ms=lock_duration_ms,
                        own_links=own_links,
                        preload=preload,
                        env=env,
                    )
                )

    def __iter__(self) -> Iterator[WorkerProcess]:
        return iter(self.workers)

    def for_queue(self, queue: str) -> list[WorkerProcess]:
        full = config.queue_name(queue)
        return [w for w in self.workers if w.queue == full]

    def start(self) -> None:
        """Launch every worker at once, then wait for all of them."""
        try:
            for worker in self.workers:
                if not worker.is_running:
                    worker.launch()
            for worker in self.workers:
                worker.wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 5.0) -> None:
        # All at once, so that stopping N workers takes one grace period.
        for worker in self.workers:
            worker.request_stop()
        for worker in self.workers:
            worker.wait_stopped(grace)

    def ensure_running(self) -> list[str]:
        """Start any worker that died or was killed; returns their names."""
        dead = [w for w in self.workers if not w.is_running]
        for worker in dead:
            worker.launch()
        for worker in dead:
            worker.wait_ready()
        return [w.name for w in dead]

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
