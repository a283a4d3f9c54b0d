"""Worker process handles without servers: command line, environment, startup."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.errors import HarnessError, StartupError
from chaos.workers import WorkerProcess
from system import config
from system.redis_client import RedisSettings

SETTINGS = RedisSettings(sentinels=(("127.0.0.1", 1),), master_name="bullproof")


def handle(tmp_path: Path, **kwargs: object) -> WorkerProcess:
    return WorkerProcess(
        "billing-t1",
        "billing",
        settings=SETTINGS,
        pg_dsn="postgresql://nobody@127.0.0.1:1/none",
        log_path=tmp_path / "billing-t1.log",
        **kwargs,  # type: ignore[arg-type]
    )


def test_worker_gets_its_queue_settings_and_preload_from_its_handle(
    tmp_path: Path,
) -> None:
    worker = handle(tmp_path, concurrency=3, lock_duration_ms=1500, preload=["a", "b"])
    argv = worker.argv()
    assert argv[1:3] == ["-m", "system.worker"], argv
    assert argv[argv.index("--queue") + 1] == config.QUEUES["billing"], argv
    assert argv[argv.index("--concurrency") + 1] == "3", argv
    assert argv[argv.index("--lock-duration-ms") + 1] == "1500", argv
    env = worker.environment()
    assert RedisSettings.from_json(env[config.ENV_REDIS]) == SETTINGS, env
    assert env[config.ENV_PRELOAD] == "a,b", env
    assert env[config.ENV_PG_DSN].endswith("/none"), env


def test_worker_that_dies_at_startup_is_reported_with_its_log(tmp_path: Path) -> None:
    worker = handle(tmp_path, env={config.ENV_REDIS: "{not json"})
    with pytest.raises(
        StartupError,
        match=r"(?s)exited before it was ready: .*cannot start: BULLPROOF_REDIS",
    ):
        worker.start()
    assert not worker.is_running, "a failed worker must not be left running"


def test_signalling_a_worker_that_never_started_is_a_harness_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(HarnessError, match=r"^worker billing-t1 is not running"):
        handle(tmp_path).pause()
