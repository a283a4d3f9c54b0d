"""Cutting chosen links of the topology apart, and joining them again.

A cut link either refuses (its Toxiproxy proxy is disabled: open connections
are closed, new ones are refused) or blackholes (a `timeout` toxic with no
timeout on both directions: connections stay open and every byte is
dropped, the way a silent network fails).

Presets:

- `split_brain`: the master's peer link only. Replicas and Sentinels lose it
  and elect another master, while clients still reach the old one through
  its client link and keep writing there.
- `cut_client`: every link that `Topology.add_client(name)` made for one
  client, say one worker, which then sees Redis vanish while others do not.
- `cut_postgres`: the system's link to PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, ClassVar

from chaos.errors import HarnessError
from chaos.faults.base import (
    MASTER,
    Fault,
    KnownTargets,
    Param,
    check_link,
    check_node,
    resolve_link,
)

logger = logging.getLogger(__name__)

BLACKHOLE_STREAMS = ("upstream", "downstream")


class Partition(Fault):
    """Cut one link (a proxy name, or `master.peer` and the like)."""

    name = "partition"
    PARAMS: ClassVar[dict[str, Param]] = {
        "mode": Param(str, "refuse", choices=("refuse", "blackhole")),
    }

    cut: tuple[str, ...] = ()

    @classmethod
    def check_target(cls, target: str, known: KnownTargets) -> str | None:
        return check_link(target, known)

    def links(self) -> list[str]:
        """The proxies to cut, resolved now."""
        return [resolve_link(self, self.target)]

    def _toxic_name(self, stream: str) -> str:
        return f"bullproof_blackhole_{stream}"

    def _start(self) -> dict[str, Any]:
        links = self.links()
        if not links:
            raise HarnessError(f"{self.name} on {self.target!r}: no links to cut")
        api = self.topology.toxiproxy
        done: list[str] = []
        try:
            for link in links:
                if self.params["mode"] == "refuse":
                    api.set_enabled(link, False)
                else:
                    for stream in BLACKHOLE_STREAMS:
                        api.add_toxic(
                            link,
                            "timeout",
                            {"timeout": 0},
                            name=self._toxic_name(stream),
                            stream=stream,
                        )
                done.append(link)
        except BaseException:
            # Half a partition is a fault nobody asked for: undo it.
            self.cut = tuple(done) + tuple(links[len(done) : len(done) + 1])
            with contextlib.suppress(HarnessError):
                self._undo()
            raise
        self.cut = tuple(links)
        return {"links": links, "observed": self._observe_start()}

    def _observe_start(self) -> dict[str, Any]:
        return {}

    def _undo(self) -> None:
        api = self.topology.toxiproxy
        errors = []
        for link in self.cut:
            try:
                if self.params["mode"] == "refuse":
                    api.set_enabled(link, True)
                else:
                    present = {t["name"] for t in api.toxics(link)}
                    for stream in BLACKHOLE_STREAMS:
                        if self._toxic_name(stream) in present:
                            api.remove_toxic(link, self._toxic_name(stream))
            except HarnessError as exc:
                errors.append(f"{link}: {exc}")
        if errors:
            raise HarnessError("healing the partition failed: " + "; ".join(errors))

    def _stop(self) -> dict[str, Any]:
        observed = self._observe_stop()
        self._undo()
        return {"links": list(self.cut), "observed": observed}

    def _observe_stop(self) -> dict[str, Any]:
        return {}


class SplitBrain(Partition):
    """Cut the master (or a named Redis node) from its replicas and Sentinels."""

    name = "split_brain"
    old_master: str | None = None

    @classmethod
    def check_target(cls, target: str, known: KnownTargets) -> str | None:
        return check_node(target, known, ("redis",))

    def links(self) -> list[str]:
        self.old_master = self.resolve_node()
        return [f"{self.old_master}.peer"]

    def _observe_start(self) -> dict[str, Any]:
        return {"isolated": self.old_master}

    def _observe_stop(self) -> dict[str, Any]:
        # Who the Sentinels named while the old master was cut off.
        masters = self.topology.sentinel_masters()
        named = {m for m in masters.values() if m is not None}
        return {
            "isolated": self.old_master,
            "sentinels": masters,
            "failed_over": bool(named) and self.old_master not in named,
        }


class CutClient(Partition):
    """Cut one client (its own proxies from `Topology.add_client`) from Redis."""

    name = "cut_client"

    @classmethod
    def check_target(cls, target: str, known: KnownTargets) -> str | None:
        if target in known.clients or target in known.workers:
            return None
        return (
            "unknown client; call Topology.add_client(name) (or spawn the worker "
            f"with its own links) first; known clients: {sorted(known.clients)}"
        )

    def links(self) -> list[str]:
        links = self.topology.client_links(self.target)
        if not links:
            raise HarnessError(
                f"client {self.target!r} has no links of its own; "
                "call Topology.add_client first"
            )
        return links


class CutPostgres(Partition):
    """Cut the system from PostgreSQL (checkers still reach it directly)."""

    name = "cut_postgres"

    @classmethod
    def check_target(cls, target: str, known: KnownTargets) -> str | None:
        if target == "postgres":
            return None
        return "the only target is 'postgres'"

    def links(self) -> list[str]:
        return ["postgres.client"]


__all__ = ["MASTER", "CutClient", "CutPostgres", "Partition", "SplitBrain"]
