"""Killing or freezing a worker process while it holds jobs.

- `kill_worker`: SIGKILL a worker, by default once it holds an active job,
  and start it again on stop. The jobs it held stay active until their locks
  expire; then another worker (or the restarted one) gets them again.
- `pause_worker`: SIGSTOP a worker, by default once it holds an active job,
  and SIGCONT it on stop. Held longer than its lock duration plus a stalled
  check, its jobs are handed to another worker while it still has them: when
  it wakes up it finishes them too, a real second delivery.

"Holds an active job" is read from the system itself: a job id in the
queue's active list whose latest `deliveries` row names this worker. Faults
target workers by name; the worker handles come from `FaultContext.workers`
(see `chaos.workers`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import psycopg
import redis

from chaos.errors import HarnessError
from chaos.faults.base import Fault, KnownTargets, Param

logger = logging.getLogger(__name__)

QUEUE_PREFIX = "bull"


def held_jobs(topology: Any, worker: Any) -> list[str]:
    """The ids of the active jobs of `worker.queue` that `worker` last took."""
    try:
        with topology.admin(topology.current_master(), timeout=1.0) as client:
            active = client.lrange(f"{QUEUE_PREFIX}:{worker.queue}:active", 0, -1)
    except (redis.RedisError, HarnessError):
        return []
    if not active:
        return []
    with psycopg.connect(topology.postgres_admin_dsn, connect_timeout=2) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (job_id) job_id, worker FROM deliveries"
            " WHERE queue = %s AND job_id = ANY(%s)"
            " ORDER BY job_id, delivered_at DESC, id DESC",
            (worker.queue, list(active)),
        ).fetchall()
    return sorted(str(job) for job, who in rows if who == worker.name)


class WorkerFault(Fault):
    """A fault on one worker process, named by its worker name."""

    PARAMS: ClassVar[dict[str, Param]] = {
        "wait_active": Param(bool, True),
        "active_timeout": Param(float, 15.0, minimum=0.0),
    }

    worker: Any = None
    held: tuple[str, ...] = ()

    @classmethod
    def check_target(cls, target: str, known: KnownTargets) -> str | None:
        if target in known.workers:
            return None
        return f"unknown worker; known workers: {sorted(known.workers)}"

    def _worker(self) -> Any:
        try:
            return self.context.workers[self.target]
        except KeyError:
            raise HarnessError(
                f"{self.name}: no worker named {self.target!r} in the fault context"
            ) from None

    def _wait_for_held_jobs(self, worker: Any) -> tuple[list[str], float]:
        """Jobs the worker holds, waiting for some if asked; and the wait."""
        t0 = time.monotonic()
        deadline = t0 + self.params["active_timeout"]
        while True:
            held = held_jobs(self.topology, worker)
            if held or not self.params["wait_active"] or time.monotonic() > deadline:
                return held, round(time.monotonic() - t0, 3)
            time.sleep(0.02)


class KillWorker(WorkerFault):
    """SIGKILL a worker (once it holds a job); start it again on stop."""

    name = "kill_worker"

    def _start(self) -> dict[str, Any]:
        worker = self._worker()
        if not worker.is_running:
            raise HarnessError(f"kill_worker: worker {worker.name} is not running")
        held, waited = self._wait_for_held_jobs(worker)
        pid = worker.pid
        worker.kill()
        self.worker = worker
        self.held = tuple(held)
        logger.debug("killed worker %s holding %d jobs", worker.name, len(held))
        return {
            "nodes": [worker.name],
            "observed": {"pid": pid, "held_jobs": held, "waited_s": waited},
        }

    def _stop(self) -> dict[str, Any]:
        worker = self.worker
        worker.start()
        return {"nodes": [worker.name], "observed": {"pid": worker.pid}}


class PauseWorker(WorkerFault):
    """SIGSTOP a worker (once it holds a job); SIGCONT it on stop."""

    name = "pause_worker"

    paused_at: float = 0.0

    def _start(self) -> dict[str, Any]:
        worker = self._worker()
        if not worker.is_running:
            raise HarnessError(f"pause_worker: worker {worker.name} is not running")
        held, waited = self._wait_for_held_jobs(worker)
        worker.pause()
        self.paused_at = time.monotonic()
        self.worker = worker
        self.held = tuple(held)
        return {
            "nodes": [worker.name],
            "observed": {"pid": worker.pid, "held_jobs": held, "waited_s": waited},
        }

    def _stop(self) -> dict[str, Any]:
        worker = self.worker
        paused_s = round(time.monotonic() - self.paused_at, 3)
        if worker.is_running:
            worker.resume()
        return {
            "nodes": [worker.name],
            "observed": {"paused_s": paused_s, "running": worker.is_running},
        }
