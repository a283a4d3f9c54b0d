"""Killing a Redis node or Sentinel with SIGKILL, and restarting it later.

Killing the master makes the Sentinels elect a new one after their
down-after time; `start()` waits for that (up to `failover_timeout` seconds)
and records which node they named, or that none was named in time. `stop()`
restarts the node from its files; a former master rejoins as a replica of the
current one, as an orchestrator would restart it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, ClassVar

import redis

from chaos.errors import HarnessError, StartupError
from chaos.faults.base import Fault, KnownTargets, Param, check_node, wait_until

logger = logging.getLogger(__name__)


class Kill(Fault):
    """SIGKILL one Redis node or Sentinel; restart it on stop."""

    name = "kill"
    PARAMS: ClassVar[dict[str, Param]] = {
        "failover_timeout": Param(float, 15.0, minimum=0.0),
        "ready_timeout": Param(float, 30.0, minimum=0.0),
    }

    node: str | None = None

    @classmethod
    def check_target(cls, target: str, known: KnownTargets) -> str | None:
        return check_node(target, known, ("redis", "sentinel"))

    def _start(self) -> dict[str, Any]:
        node = self.resolve_node()
        was_master = False
        if node.startswith("redis-"):
            with contextlib.suppress(HarnessError):
                was_master = self.topology.current_master() == node

        killed_at = time.monotonic()
        self.topology.kill(node)
        self.node = node
        observed: dict[str, Any] = {"was_master": was_master}
        if not was_master:
            return {"nodes": [node], "observed": observed}

        # The record answers "who took over, and how fast", or that nobody did.
        try:
            new_master = self.topology.wait_for_master(
                not_name=node, timeout=self.params["failover_timeout"]
            )
        except StartupError:
            observed["new_master"] = None
            observed["sentinels"] = self.topology.sentinel_masters()
            logger.info(
                "no new master within %.1f s of killing %s",
                self.params["failover_timeout"],
                node,
            )
        else:
            observed["new_master"] = new_master
            observed["failover_s"] = round(time.monotonic() - killed_at, 3)
            logger.info(
                "failover: %s replaced %s in %.2f s",
                new_master,
                node,
                observed["failover_s"],
            )
        return {"nodes": [node], "observed": observed}

    def _stop(self) -> dict[str, Any]:
        assert self.node is not None, "stop before start"
        node = self.node
        self.topology.restart(node, rejoin=True)
        ready = wait_until(
            lambda: node_ready(self.topology, node), self.params["ready_timeout"]
        )
        return {"nodes": [node], "observed": {"ready": ready}}


def node_ready(topology: Any, node: str) -> bool:
    """Whether `node` answers PING and, if Redis, has finished loading its data."""
    try:
        with topology.admin(node, timeout=0.5) as client:
            if not client.ping():
                return False
            if node.startswith("redis-"):
                return int(client.info("persistence").get("loading", 1)) == 0
            return True
    except redis.RedisError:
        return False
