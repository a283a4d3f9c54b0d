"""Archiving: move finished jobs from Redis into PostgreSQL's `job_archive`.

Completed and failed jobs are copied into `job_archive` and then removed from
Redis, which keeps Redis small without losing the record. A job is removed
only after its row is in the archive (written by this archiver or another
one), so none is lost; the unique constraint on (queue, job id) means none is
archived twice, even with several archivers running at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

from bullmq import Queue

from system import config
from system.app import System

logger = logging.getLogger(__name__)

ARCHIVE_BATCH = 200
FINISHED_STATES = ("completed", "failed")


@dataclass
class ArchiveReport:
    archived: int = 0  # rows this archiver wrote
    already: int = 0  # rows another archiver (or an earlier run) wrote
    removed: int = 0  # jobs this archiver removed from Redis
    busy: int = 0  # jobs Redis would not remove (locked); left for next time

    def __str__(self) -> str:
        return (
            f"archived {self.archived} jobs ({self.already} already archived), "
            f"removed {self.removed} from Redis, {self.busy} left busy"
        )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


async def _archive_job(
    system: System,
    queue: Queue,
    state: str,
    job_id: str,
    name: str,
    report: ArchiveReport,
) -> bool:
    """Archive one job and remove it; False if Redis refused the removal."""
    raw: dict[str, str] = await queue.client.hgetall(queue.toKey(job_id))
    if raw:
        async with system.db.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO job_archive (queue, job_id, name, state, data,"
                " return_value, failed_reason, attempts_made, finished_on,"
                " archived_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING id",
                (
                    queue.name,
                    job_id,
                    raw.get("name"),
                    state,
                    raw.get("data"),
                    raw.get("returnvalue"),
                    raw.get("failedReason"),
                    _int(raw.get("atm")),
                    _int(raw.get("finishedOn")),
                    name,
                ),
            )
            if await cur.fetchone() is None:
                report.already += 1
            else:
                report.archived += 1

    # Removed only now that a row exists, whoever wrote it. The script also
    # answers 1 for a job that is already gone, so only a job read above counts.
    removed = await queue.remove(job_id, {"removeChildren": False})
    if removed != 1:
        report.busy += 1
        return False
    if raw:
        report.removed += 1
    return True


async def _archive_set(
    system: System, queue: Queue, state: str, name: str, report: ArchiveReport
) -> None:
    offset = 0
    while True:
        ids: list[str] = await queue.client.zrange(
            queue.keys[state], offset, offset + ARCHIVE_BATCH - 1
        )
        if not ids:
            return
        for job_id in ids:
            if not await _archive_job(system, queue, state, job_id, name, report):
                offset += 1


async def archive(
    system: System, *, name: str | None = None, queues: list[str] | None = None
) -> ArchiveReport:
    """Archive every completed and failed job of the system's queues."""
    archiver = name or f"archiver-{os.getpid()}"
    report = ArchiveReport()
    for queue_name in queues or list(config.QUEUES):
        queue = system.producer.queue(queue_name)
        for state in FINISHED_STATES:
            await _archive_set(system, queue, state, archiver, report)
    logger.info("%s: %s", archiver, report)
    return report


async def _main(args: argparse.Namespace) -> int:
    async with System.from_env() as system:
        report = await archive(system, name=args.name)
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m system.archive",
        description="Move completed and failed jobs from Redis to PostgreSQL.",
    )
    parser.add_argument("--name", help="archiver name recorded with each row")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
