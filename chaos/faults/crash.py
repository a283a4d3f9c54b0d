"""Crashing the Redis master and restarting it from its append-only file.

What `appendfsync everysec` can lose depends on how the node dies. A process
crash (SIGKILL) loses nothing that was acknowledged: Redis writes the AOF
before it replies, and the kernel keeps what was written. A power loss or a
kernel crash also loses what was written but not yet fsynced, up to about one
second of writes. This fault does the first for real and emulates the second
by cutting the AOF back to the length it had `window` seconds before the
crash (`power_loss`), as a file system that forgets unsynced pages would.

During that window the fault itself acknowledges `markers` writes (INCR of
one key, straight to the node), so there is always something to lose. The
node is restarted at once with `rejoin=False`, within the Sentinels'
down-after time, so it stays master and what it lost is lost everywhere:
its replicas resynchronise from it. The record says how many acknowledged
writes survived, how many bytes of AOF were cut, and whether it stayed master.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import redis

from chaos.errors import HarnessError
from chaos.faults.base import MASTER, Fault, KnownTargets, Param, wait_until
from chaos.faults.kill import node_ready

logger = logging.getLogger(__name__)

_ids = itertools.count(1)


def current_incr_aof(node_dir: Path) -> Path:
    """The AOF file Redis 7 appends to now: the last `type i` in the manifest."""
    directory = node_dir / "appendonlydir"
    manifests = list(directory.glob("*.manifest"))
    if len(manifests) != 1:
        raise HarnessError(
            f"expected one AOF manifest in {directory}, found {manifests}"
        )
    incr = None
    for line in manifests[0].read_text().splitlines():
        fields = line.split()
        entry = dict(zip(fields[::2], fields[1::2], strict=False))
        if entry.get("type") == "i":
            incr = entry["file"]
    if incr is None:
        raise HarnessError(f"no incremental AOF named in {manifests[0]}")
    return directory / incr


class Crash(Fault):
    """SIGKILL the master after fresh writes; restart it from its AOF at once."""

    name = "crash"
    PARAMS: ClassVar[dict[str, Param]] = {
        "power_loss": Param(bool, True),
        "window": Param(float, 1.0, minimum=0.0, maximum=10.0),
        "markers": Param(int, 200, minimum=0, maximum=100_000),
        "ready_timeout": Param(float, 30.0, minimum=0.0),
    }

    node: str | None = None

    @classmethod
    def check_target(cls, target: str, known: KnownTargets) -> str | None:
        if target == MASTER:
            return None
        return (
            "only 'master' can be crashed this way: a replica would simply "
            "resynchronise what it lost"
        )

    def _start(self) -> dict[str, Any]:
        node = self.resolve_node()
        node_dir = self.topology.node_dir(node)
        aof = current_incr_aof(node_dir)
        key = f"bullproof:crash:{os.getpid()}:{next(_ids)}"

        with self.topology.admin(node, timeout=2.0) as client:
            keys_before = int(client.dbsize())

            # Everything up to here counts as fsynced; what follows does not.
            durable_size = aof.stat().st_size
            acked = self._write_markers(client, key)

        self.topology.kill(node)
        self.node = node
        killed_at = time.monotonic()

        cut = 0
        if self.params["power_loss"]:
            cut = self._forget_unsynced(node_dir, aof, durable_size)

        self.topology.restart(node, rejoin=False)
        ready = wait_until(
            lambda: node_ready(self.topology, node), self.params["ready_timeout"]
        )
        down_s = time.monotonic() - killed_at
        survived = keys_after = None
        if ready:
            with self.topology.admin(node, timeout=2.0) as client:
                survived = int(client.get(key) or 0)
                keys_after = int(client.dbsize())
                role = client.info("replication").get("role")
        else:
            role = None
        observed = {
            "marker_key": key,
            "acked_writes": acked,
            "surviving_writes": survived,
            "lost_writes": None if survived is None else acked - survived,
            "keys_before": keys_before,
            "keys_after": keys_after,
            "aof_bytes_cut": cut,
            "down_s": round(down_s, 3),
            "role_after_restart": role,
        }
        logger.debug(
            "crashed %s (power loss: %s): %s of %s acknowledged writes survived",
            node,
            self.params["power_loss"],
            survived,
            acked,
        )
        return {"nodes": [node], "observed": observed}

    def _write_markers(self, client: redis.Redis, key: str) -> int:
        """INCR `key` `markers` times spread over `window`; return the last ack."""
        count = self.params["markers"]
        if count == 0:
            return 0
        window = self.params["window"]
        start = time.monotonic()
        acked = 0
        for i in range(count):
            acked = int(client.incr(key))
            due = start + window * (i + 1) / count
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        return acked

    def _forget_unsynced(self, node_dir: Path, aof: Path, durable_size: int) -> int:
        # An AOF rewrite during the window starts a new file; cutting the old
        # one would then lose nothing that counts, so the cut is skipped.
        if current_incr_aof(node_dir) != aof:
            logger.info("AOF rewritten during the crash window; nothing cut")
            return 0
        size = aof.stat().st_size
        if size <= durable_size:
            return 0
        os.truncate(aof, durable_size)
        return size - durable_size

    def _stop(self) -> dict[str, Any]:
        assert self.node is not None, "stop before start"
        node = self.node
        ready = wait_until(
            lambda: node_ready(self.topology, node), self.params["ready_timeout"]
        )
        masters = self.topology.sentinel_masters()
        named = {m for m in masters.values() if m is not None}
        return {
            "nodes": [node],
            "observed": {"ready": ready, "stayed_master": named == {node}},
        }
