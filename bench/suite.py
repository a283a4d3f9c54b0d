"""How long the property suite takes, how fast it steps and resets, and how
quickly it catches the seeded bugs.

Prints one figure per line as `name value unit`:
  suite.reset_ms                  heal and reset between two examples with no
                                  fault pending, median of 20
  suite.ci.wall_s                 `pytest properties` under the ci profile
  suite.steps_per_s               state machine steps per second in that run
  suite.mutants.median_detect_s   median time from a mutant run's start to its
                                  first failed invariant, over the catalogue
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chaos.topology import create
from properties.harness import Harness

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / ".bullproof" / "reports"


def reset_ms(rounds: int = 20) -> float:
    with create("local") as topo, tempfile.TemporaryDirectory() as tmp:
        h = Harness(topo, Path(tmp) / "history.jsonl")
        try:
            h.heal()
            samples = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                h.heal()
                h.reset()
                samples.append((time.perf_counter() - t0) * 1000)
        finally:
            h.close()
    return statistics.median(samples)


def ci_run() -> tuple[float, float]:
    report = REPORTS / "bench-suite-ci.json"
    report.unlink(missing_ok=True)
    env = dict(os.environ, BULLPROOF_REPORT=str(report))
    env.pop("BULLPROOF_MUTANT", None)
    t0 = time.monotonic()
    rc = subprocess.call(
        [
            sys.executable,
            "-m",
            "pytest",
            "properties",
            "-q",
            "-p",
            "no:cacheprovider",
            "--hypothesis-profile=ci",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.monotonic() - t0
    if rc != 0:
        print(f"suite: the ci run failed (exit {rc}); figures describe a failed run")
    stats = json.loads(report.read_text()) if report.exists() else {}
    steps = sum(s.get("steps", 0) for s in stats.values())
    return wall, steps / wall if wall else 0.0


def mutants_median_detect_s() -> float | None:
    subprocess.call(
        [sys.executable, "-m", "tests.mutants"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    detected = []
    for path in REPORTS.glob("mutant-*.json"):
        if path.name == "mutant-correct-system.json":
            continue
        stats = json.loads(path.read_text())
        times = [
            s["first_failure_s"] for s in stats.values() if s.get("first_failure_s")
        ]
        if times:
            detected.append(min(times))
    return statistics.median(detected) if detected else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-mutants", action="store_true")
    args = parser.parse_args()
    REPORTS.mkdir(parents=True, exist_ok=True)

    print(f"suite.reset_ms {reset_ms():.1f} ms", flush=True)
    wall, steps_per_s = ci_run()
    print(f"suite.ci.wall_s {wall:.1f} s", flush=True)
    print(f"suite.steps_per_s {steps_per_s:.2f} steps/s", flush=True)
    if not args.skip_mutants:
        median = mutants_median_detect_s()
        value = f"{median:.1f}" if median is not None else "nan"
        print(f"suite.mutants.median_detect_s {value} s", flush=True)


if __name__ == "__main__":
    main()
