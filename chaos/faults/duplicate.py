"""Submitting the same business event twice at once, as a retrying client would.

A client that times out and retries, or two front-end replicas that both got
the same request, hand the system one event several times, concurrently.
`duplicate` calls a submitter `copies` times at the same moment with the
same event and records what each call answered. Nothing is left to undo, so
stop only closes the record; whether the event took effect once is for the
invariants to judge.

The target names a submitter: an async callable taking the event (a JSON
object) and returning what the system answered. `place_order` is built in:
each copy is placed through a `System` of its own, as separate front ends
would. Others come from `FaultContext.submitters`. Without an `event`
param, the submitter is called with None and must make up one event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from chaos.errors import HarnessError
from chaos.faults.base import Fault, KnownTargets, Param

logger = logging.getLogger(__name__)

Submitter = Callable[[Any], Awaitable[Any]]
BUILT_IN = ("place_order",)

_serial = itertools.count(1)


def sample_order(order_id: str | None = None) -> dict[str, Any]:
    """An order the reference system accepts, with a fresh id unless given one."""
    return {
        "order_id": order_id or f"dup-{os.getpid()}-{next(_serial)}-{time.time_ns()}",
        "customer_id": "customer-dup",
        "lines": [{"sku": "SKU-APPLE", "quantity": 1}],
    }


def place_order_submitter(topology: Any) -> Submitter:
    """Place each copy through a `System` of its own on `topology`."""

    async def submit(event: Any) -> Any:
        from system.app import System
        from system.orders import place_order

        system = System(topology.redis_settings(), topology.postgres_dsn, db_size=2)
        async with system:
            placement = await place_order(system, event or sample_order())
        return dataclasses.asdict(placement)

    return submit


def _describe(result: Any) -> Any:
    if isinstance(result, BaseException):
        return {"error": f"{type(result).__name__}: {result}"}
    return result


def run_in_fresh_loop(coro_factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion on a new event loop in a new thread.

    A thread of its own, so this works whether or not the caller's thread
    already runs an event loop.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        async def main() -> Any:
            return await coro_factory()

        try:
            box["result"] = asyncio.run(main())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="duplicate-submission")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


class DuplicateSubmission(Fault):
    """Submit one event `copies` times concurrently."""

    name = "duplicate"
    PARAMS: ClassVar[dict[str, Param]] = {
        "copies": Param(int, 2, minimum=2, maximum=50),
        "event": Param(dict, None),
        "timeout": Param(float, 60.0, minimum=0.0),
    }

    @classmethod
    def check_target(cls, target: str, known: KnownTargets) -> str | None:
        if target in known.submitters:
            return None
        return f"unknown submitter; known submitters: {sorted(known.submitters)}"

    def _submitter(self) -> Submitter:
        if self.target in self.context.submitters:
            return self.context.submitters[self.target]
        if self.target == "place_order":
            return place_order_submitter(self.topology)
        raise HarnessError(
            f"duplicate: no submitter named {self.target!r}; known: "
            f"{sorted([*self.context.submitters, *BUILT_IN])}"
        )

    def _start(self) -> dict[str, Any]:
        submit = self._submitter()
        event = self.params["event"]
        if event is None and self.target == "place_order":
            # One event for every copy: made here, not by each copy.
            event = sample_order()
        copies = self.params["copies"]

        async def all_at_once() -> list[Any]:
            calls = [submit(event) for _ in range(copies)]
            async with asyncio.timeout(self.params["timeout"]):
                return list(await asyncio.gather(*calls, return_exceptions=True))

        results = run_in_fresh_loop(all_at_once)
        answers = [_describe(r) for r in results]
        errors = sum(1 for r in results if isinstance(r, BaseException))
        logger.debug("submitted one event %d times at once (%d errors)", copies, errors)
        observed: Mapping[str, Any] = {
            "event": event,
            "answers": answers,
            "errors": errors,
        }
        return {"observed": observed}

    def _stop(self) -> dict[str, Any]:
        return {}
