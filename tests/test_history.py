"""The run's history: append-only JSON lines, paired operations, crash-safe reads."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from chaos.errors import HarnessError
from chaos.history import History, pair_operations, read_history


def test_an_operation_is_an_invoke_and_a_completion(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with History(path) as history:
        invocation = history.invoke("producer-1", "place_order", {"order": "o-1"})
        history.complete(invocation, "ok", {"job": "j-1"})

    first, second = read_history(path)
    assert (first.kind, first.outcome, first.op) == ("invoke", None, "place_order")
    assert (second.kind, second.outcome) == ("complete", "ok")
    assert first.op_id == second.op_id and first.op_id is not None
    assert second.process == "producer-1" and second.value == {"job": "j-1"}
    assert first.time <= second.time
    assert [first.index, second.index] == [0, 1]


def test_each_line_is_one_json_object(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with History(path) as history:
        history.info("nemesis", "failover", {"new_master": "redis-2"})
    [line] = path.read_text().splitlines()
    raw = json.loads(line)
    assert set(raw) == {
        "index",
        "time",
        "process",
        "kind",
        "op",
        "value",
        "outcome",
        "op_id",
    }
    assert raw["value"] == {"new_master": "redis-2"}


def test_every_line_is_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    history = History(path)
    history.info("p", "one")
    assert len(read_history(path)) == 1, "the line was not flushed"
    history.close()


def test_the_operation_block_records_ok_and_unknown(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with History(path) as history:
        with history.operation("p", "add") as op:
            pass
        assert op.completion is not None and op.completion.outcome == "ok"

        with pytest.raises(TimeoutError), history.operation("p", "add"):
            raise TimeoutError("no reply in 2 s")

        with (
            pytest.raises(ValueError, match="refused"),
            history.operation("p", "add") as op,
        ):
            op.fail({"reason": "duplicate"})
            raise ValueError("refused")

    outcomes = [e.outcome for e in read_history(path) if e.kind == "complete"]
    assert outcomes == ["ok", "unknown", "fail"]
    unknown = next(e for e in read_history(path) if e.outcome == "unknown")
    assert "TimeoutError: no reply in 2 s" in unknown.value["error"]


def test_an_operation_completes_only_once(tmp_path: Path) -> None:
    with History(tmp_path / "h.jsonl") as history, history.operation("p", "x") as op:
        op.ok()
        with pytest.raises(HarnessError, match="already completed"):
            op.fail()


def test_a_bad_outcome_or_completion_is_refused(tmp_path: Path) -> None:
    with History(tmp_path / "h.jsonl") as history:
        invocation = history.invoke("p", "x")
        with pytest.raises(HarnessError, match="outcome must be one of"):
            history.complete(invocation, "maybe")  # type: ignore[arg-type]
        info = history.info("p", "y")
        with pytest.raises(HarnessError, match="can only complete an invoke"):
            history.complete(info, "ok")


def test_a_closed_history_refuses_writes(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl")
    history.close()
    with pytest.raises(HarnessError, match="is closed"):
        history.info("p", "late")


def test_a_truncated_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with History(path) as history:
        history.info("p", "one")
        history.info("p", "two")
    with open(path, "a") as f:
        f.write('{"index": 2, "time": 1.0, "proc')

    events = read_history(path)
    assert [e.op for e in events] == ["one", "two"]


def test_a_broken_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with History(path) as history:
        history.info("p", "one")
    with open(path, "a") as f:
        f.write("not json\n")
        f.write(path.read_text().splitlines()[0] + "\n")
    with pytest.raises(HarnessError, match=r"h.jsonl:2: not a history event"):
        read_history(path)


def test_reopening_appends_after_a_truncated_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with History(path) as history:
        invocation = history.invoke("p", "one")
        history.complete(invocation, "ok")
    with open(path, "a") as f:
        f.write('{"index": 2, "ti')

    with History(path) as history:
        later = history.invoke("p", "two")
    events = read_history(path)
    assert [e.op for e in events] == ["one", "one", "two"]
    assert later.index == 2 and later.op_id == 2, later


def test_many_asyncio_tasks_write_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"

    async def worker(history: History, n: int) -> None:
        for i in range(50):
            with history.operation(f"task-{n}", "add", {"i": i}):
                await asyncio.sleep(0)

    async def main(history: History) -> None:
        await asyncio.gather(*(worker(history, n) for n in range(20)))

    with History(path) as history:
        asyncio.run(main(history))

    events = read_history(path)
    assert len(events) == 20 * 50 * 2
    assert [e.index for e in events] == list(range(len(events)))
    pairs = pair_operations(events)
    assert len(pairs) == 1000 and all(c is not None for _, c in pairs)
    assert all(i.process == c.process for i, c in pairs if c is not None)


def test_threads_write_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"

    def writer(history: History, n: int) -> None:
        for _ in range(200):
            history.info(f"t{n}", "x", "v" * 500)

    with History(path) as history:
        threads = [threading.Thread(target=writer, args=(history, n)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    events = read_history(path)
    assert len(events) == 1600
    assert sorted(e.index for e in events) == list(range(1600))


def test_pairing_finds_unfinished_and_orphaned_operations(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with History(path) as history:
        history.invoke("p", "hangs")
        done = history.invoke("p", "done")
        history.complete(done, "ok")
    pairs = pair_operations(read_history(path))
    assert [(i.op, c is None) for i, c in pairs] == [("hangs", True), ("done", False)]

    events = read_history(path)
    with pytest.raises(HarnessError, match=r"completions without an invocation"):
        pair_operations(events[:1] + events[2:])
