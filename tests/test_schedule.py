"""Schedules are checked whole before anything runs, and run as written."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chaos.errors import ConfigurationError
from chaos.faults import KnownTargets
from chaos.schedule import Schedule, apply, parse
from chaos.topology import Topology


def entry(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "fault": "latency",
        "target": "redis-2.client",
        "start": 1,
        "duration": 2,
        "params": {"latency": 50},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def rejected(data: Any, known: KnownTargets | None = None) -> str:
    with pytest.raises(ConfigurationError, match="schedule rejected") as info:
        parse(data, known)
    return str(info.value)


def test_a_good_schedule_parses_with_defaults_filled_in() -> None:
    schedule = parse([entry(), entry(fault="kill", target="master", params=None)])
    assert [e.fault for e in schedule.entries] == ["latency", "kill"]
    assert schedule.entries[0].params["stream"] == "downstream"
    assert schedule.entries[1].params["failover_timeout"] == 15.0
    assert schedule.length == 3.0


def test_a_schedule_survives_a_json_round_trip() -> None:
    schedule = parse(
        json.dumps([entry(), entry(fault="split_brain", target="master", params=None)])
    )
    again = parse(schedule.to_json())
    assert again == schedule, "parsing the printed schedule gave another schedule"


def test_an_unknown_fault_is_named_with_its_entry() -> None:
    message = rejected([entry(), entry(fault="meteor")])
    assert "entry 1 ('meteor'): unknown fault 'meteor'" in message
    assert "entry 0" not in message, "a good entry was blamed"


def test_an_unknown_target_is_named_with_its_entry() -> None:
    message = rejected([entry(target="redis-7.client")])
    assert "entry 0 ('latency'): target 'redis-7.client': unknown link" in message
    message = rejected([entry(fault="kill", target="postgres", params=None)])
    assert "entry 0 ('kill'): target 'postgres': unknown target" in message


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"start": -1}, "'start' must be >= 0, got -1"),
        ({"duration": -0.5}, "'duration' must be >= 0, got -0.5"),
        ({"start": "soon"}, "'start' must be a number of seconds, got 'soon'"),
        ({"start": True}, "'start' must be a number of seconds, got True"),
        ({"duration": float("inf")}, "'duration' must be finite"),
        ({"start": None}, "'start' must be a number of seconds, got None"),
    ],
)
def test_bad_times_are_rejected(changes: dict[str, Any], problem: str) -> None:
    message = rejected([entry(**changes)])
    assert f"entry 0 ('latency'): {problem}" in message, message


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"latency": -5}, "param 'latency' must be >= 0.0, got -5"),
        ({"latency": "slow"}, "param 'latency' must be a number, got 'slow'"),
        ({"lag": 5}, "unknown param(s) ['lag']"),
        ({"stream": "sideways"}, "param 'stream' must be one of"),
        ({"latency": 10, "jitter": 20}, "must not exceed 'latency'"),
        ([1, 2], "params must be an object"),
    ],
)
def test_bad_params_are_rejected(params: Any, problem: str) -> None:
    message = rejected([entry(params=params)])
    assert "entry 0 ('latency'): " in message and problem in message, message


def test_every_bad_entry_is_reported_at_once() -> None:
    message = rejected(
        [entry(), entry(fault="meteor"), entry(start=-1), entry(target="nowhere")]
    )
    for index in (1, 2, 3):
        assert f"entry {index} " in message, f"entry {index} missing: {message}"


def test_the_same_fault_on_the_same_target_may_not_overlap() -> None:
    message = rejected([entry(start=0, duration=5), entry(start=4, duration=1)])
    assert "entry 1 ('latency'): overlaps entry 0 on target 'redis-2.client'" in (
        message
    )
    # Back to back is fine.
    parse([entry(start=0, duration=4), entry(start=4, duration=1)])


def test_malformed_schedules_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        parse("[{")
    with pytest.raises(ConfigurationError, match="must be a list of entries"):
        parse({"fault": "kill"})
    assert "must be an object" in rejected([42])
    assert "unknown key(s) ['when']" in rejected([entry(when=3)])


def test_clients_and_workers_are_targets_only_when_known() -> None:
    cut = entry(fault="cut_client", target="w1", params=None)
    assert "unknown client" in rejected([cut])
    parse([cut], KnownTargets(clients=frozenset({"w1"})))


def test_steps_stop_before_start_at_the_same_instant() -> None:
    schedule = parse(
        [
            entry(start=0, duration=4),
            entry(start=4, duration=1),
            entry(fault="kill", target="sentinel-1", start=4, duration=0, params=None),
        ]
    )
    steps = [(at, action, e.index) for at, action, e in schedule.steps()]
    assert steps == [
        (0.0, "start", 0),
        (4.0, "stop", 0),
        (4.0, "start", 1),
        (4.0, "start", 2),
        (4.0, "stop", 2),
        (5.0, "stop", 1),
    ]


def test_an_empty_schedule_is_valid_and_empty() -> None:
    assert parse([]) == Schedule(())


@pytest.mark.slow
def test_a_bad_schedule_applies_nothing(healthy_topology: Topology) -> None:
    from chaos.faults import Nemesis

    nemesis = Nemesis(healthy_topology)
    data = [entry(fault="kill", target="master", start=0, params=None)]
    data.append(entry(start=-1))
    master = healthy_topology.current_master()
    with pytest.raises(ConfigurationError, match=r"entry 1 \('latency'\)"):
        apply(data, nemesis)
    assert nemesis.records == [] and nemesis.active == []
    assert healthy_topology.is_running(master), "the good entry was applied"
    assert healthy_topology.health_problems() == []


@pytest.mark.slow
def test_a_small_schedule_runs_in_order_and_heals(
    healthy_topology: Topology, tmp_path: Any
) -> None:
    from chaos.faults import Nemesis
    from chaos.history import History, pair_operations, read_history

    data = [
        {
            "fault": "latency",
            "target": "master.client",
            "start": 0,
            "duration": 1.0,
            "params": {"latency": 100},
        },
        {
            "fault": "partition",
            "target": "redis-3.client",
            "start": 0.5,
            "duration": 1.0,
        },
        {"fault": "kill", "target": "sentinel-2", "start": 1.0, "duration": 0.5},
    ]
    with History(tmp_path / "history.jsonl") as history:
        nemesis = Nemesis(healthy_topology, history=history)
        records = apply(json.dumps(data), nemesis)

    done = [(r.action, r.fault) for r in records]
    assert done == [
        ("start", "latency"),
        ("start", "partition"),
        ("stop", "latency"),
        ("start", "kill"),
        ("stop", "partition"),
        ("stop", "kill"),
    ], done
    starts = [r.at for r in records]
    assert starts == sorted(starts), "steps ran out of order"
    assert starts[-1] - starts[0] >= 1.4, "steps ran before their time"
    assert healthy_topology.health_problems() == []

    events = read_history(tmp_path / "history.jsonl")
    assert events[0].op == "schedule" and parse(events[0].value) == parse(data)
    pairs = pair_operations(events)
    assert [p[0].op for p in pairs] == [f"{a}:{f}" for a, f in done]
    assert all(c is not None and c.outcome == "ok" for _, c in pairs), pairs
    assert events[-1].op == "heal"


def test_a_fault_record_round_trips_through_json() -> None:
    from chaos.faults import FaultRecord

    record = FaultRecord(
        fault="kill",
        target="master",
        action="start",
        at=1.5,
        nodes=("redis-1",),
        params={"failover_timeout": 15.0},
        observed={"new_master": "redis-2", "was_master": True},
    )
    again = FaultRecord.from_dict(json.loads(record.to_json()))
    assert again == record, f"{again} != {record}"


def test_every_registered_fault_checks_its_defaults() -> None:
    from chaos.faults import FAULTS

    for name, cls in FAULTS.items():
        params = cls.check_params({})
        assert set(params) == set(cls.PARAMS), f"{name}: {params}"


def test_a_schedule_is_read_back_from_a_history(tmp_path: Any) -> None:
    from chaos.history import History
    from chaos.schedule import from_history

    schedule = parse([entry(), entry(fault="kill", target="sentinel-2", params=None)])
    with History(tmp_path / "h.jsonl") as history:
        history.info("nemesis", "schedule", schedule.to_data())
    assert from_history(tmp_path / "h.jsonl") == schedule

    with History(tmp_path / "empty.jsonl") as history:
        history.info("nemesis", "heal")
    with pytest.raises(ConfigurationError, match="records no schedule"):
        from_history(tmp_path / "empty.jsonl")


def test_the_command_line_check_names_the_bad_entry(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from chaos.schedule import main

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([entry(), entry(fault="meteor")]))
    assert main(["check", str(bad)]) == 2
    assert "entry 1 ('meteor'): unknown fault" in capsys.readouterr().out

    good = tmp_path / "good.json"
    good.write_text(json.dumps([entry()]))
    assert main(["check", str(good)]) == 0
    assert capsys.readouterr().out.startswith("ok: 1 faults over 3 s")
