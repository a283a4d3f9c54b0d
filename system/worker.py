"""The worker process: `python -m system.worker --queue NAME`.

One process serves one queue. Configuration comes from the environment:
`BULLPROOF_REDIS` (a `RedisSettings` JSON document), `BULLPROOF_PG_DSN`, and
optionally `BULLPROOF_WORK_MS` (extra time per order job) and
`BULLPROOF_PRELOAD`, a comma-separated list of modules imported before
anything else runs, so that a test can swap a seam (see `system`) without
editing the system.

The worker prints `READY <name> <queue> <pid>` on stdout once it is connected
and consuming, so whoever started it can wait for that line instead of
sleeping. SIGTERM (or SIGINT) closes it gracefully: the jobs in hand finish,
then the connections close.

It keeps working across failovers without a restart: every bullmq object has
its own client that follows the master through Sentinel, the socket timeout is
above bullmq's longest blocking wait, and `runRetryDelay` is short, where the
default of 15 s would idle the worker after every connection error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from typing import Any

from bullmq import Worker

from system import config, jobs, redis_client
from system.db import Database, apply_schema
from system.errors import SystemConfigError
from system.processors import Processors

logger = logging.getLogger(__name__)

WORKER_OPTIONS: dict[str, Any] = {
    "runRetryDelay": 300,
    "stalledInterval": 3000,
    "maxStalledCount": 3,
    "drainDelay": 5,
}
DEFAULT_CONCURRENCY = 10
DEFAULT_LOCK_DURATION_MS = 10_000
STARTUP_DEADLINE_S = 30.0
CLOSE_TIMEOUT_S = 20.0


def preload(modules: str | None = None) -> list[str]:
    """Import each module named in `BULLPROOF_PRELOAD`; returns their names."""
    raw = os.environ.get(config.ENV_PRELOAD, "") if modules is None else modules
    names = [name.strip() for name in raw.split(",") if name.strip()]
    for name in names:
        importlib.import_module(name)
        logger.info("preloaded %s", name)
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m system.worker", description="Process one queue's jobs."
    )
    parser.add_argument("--queue", required=True, help="short or full queue name")
    parser.add_argument("--name", help="worker name (default: <queue>-<pid>)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument(
        "--lock-duration-ms", type=int, default=DEFAULT_LOCK_DURATION_MS
    )
    parser.add_argument(
        "--stalled-interval-ms", type=int, default=WORKER_OPTIONS["stalledInterval"]
    )
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.lock_duration_ms < 100:
        parser.error(f"--lock-duration-ms must be >= 100, got {args.lock_duration_ms}")
    return args


async def _connect_database(db: Database) -> None:
    deadline = asyncio.get_running_loop().time() + STARTUP_DEADLINE_S
    while True:
        try:
            await apply_schema(db)
            return
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            logger.warning("PostgreSQL not ready (%s); retrying", exc)
            await asyncio.sleep(0.5)


async def serve(args: argparse.Namespace) -> int:
    queue = config.queue_name(args.queue)
    name = args.name or f"{config.short_queue_name(queue)}-{os.getpid()}"
    settings = config.redis_settings_from_env()
    db = Database(config.pg_dsn_from_env(), max_size=args.concurrency + 2)
    await _connect_database(db)

    producer = jobs.Producer(settings)
    plain = redis_client.master_client(settings)
    await plain.ping()
    processors = Processors(db, producer, plain, name)

    opts: dict[str, Any] = {
        **WORKER_OPTIONS,
        "stalledInterval": args.stalled_interval_ms,
        "connection": redis_client.master_client(settings),
        "concurrency": args.concurrency,
        "lockDuration": args.lock_duration_ms,
        "name": name,
        "autorun": False,
    }
    worker = Worker(queue, processors.process, opts)
    worker.on("failed", processors.on_failed)
    worker.on(
        "error",
        lambda err, *rest: logger.warning("worker %s: %r", name, err),
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    running = asyncio.ensure_future(worker.run())
    print(f"READY {name} {queue} {os.getpid()}", flush=True)
    logger.info("worker %s ready on %s (concurrency %d)", name, queue, args.concurrency)

    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    # bullmq's run loop returns by itself only after an unexpected error; the
    # exit status tells whoever supervises the worker to start it again.
    failed = running.done()
    if failed:
        logger.error("worker %s stopped on its own; exiting with status 1", name)
    logger.info("worker %s closing", name)
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await worker.close()
            await asyncio.gather(running, return_exceptions=True)
            await processors.drain()
    except TimeoutError:
        logger.warning("worker %s did not close in %.0f s", name, CLOSE_TIMEOUT_S)
    stopping.cancel()
    await producer.close()
    with contextlib.suppress(Exception):
        await plain.aclose()
    await db.close()
    logger.info("worker %s closed", name)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    args = parse_args(argv)
    preload()
    try:
        return asyncio.run(serve(args))
    except SystemConfigError as exc:
        logger.error("cannot start: %s", exc)
        return 2


if __name__ == "__main__":
    # Run the copy imported as `system.worker`, so that a preloaded module that
    # patches `system.worker.WORKER_OPTIONS` patches what actually runs.
    from system.worker import main as _main

    sys.exit(_main())
