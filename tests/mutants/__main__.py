"""Run the properties against every seeded bug and print what caught it.

    python -m tests.mutants [NAME ...] [--profile ci] [--baseline]

For each mutant: its target properties run in a fresh pytest session with the
bug applied. The table gives, per mutant: caught or not, the invariant that
failed, seconds from the session's start to the first failure, the length of
the shrunk counterexample (rules in the final failing program), and the wall
time. The last line is `mutants caught K/N`; the exit status is 0 only when
every mutant was caught (and, with --baseline, the correct system passed).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / ".bullproof" / "reports"


def catalogue() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name for m in pkgutil.iter_modules([str(here)]) if m.name != "__main__"
    )


def run_one(name: str | None, targets: list[str], profile: str) -> dict[str, object]:
    label = name or "(correct system)"
    report_path = REPORTS / f"mutant-{label.strip('()').replace(' ', '-')}.json"
    report_path.unlink(missing_ok=True)
    env = dict(os.environ, BULLPROOF_REPORT=str(report_path))
    env.pop("BULLPROOF_MUTANT", None)
    if name:
        env["BULLPROOF_MUTANT"] = name
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *targets,
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--hypothesis-profile={profile}",
    ]
    log = REPORTS / f"{report_path.stem}.log"
    t0 = time.monotonic()
    with open(log, "w") as out:
        rc = subprocess.call(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    wall = time.monotonic() - t0

    stats = json.loads(report_path.read_text()) if report_path.exists() else {}
    failed = [s for s in stats.values() if s.get("outcome") == "failed"]
    invariant = next((s["invariant"] for s in failed if s.get("invariant")), None)
    first = min(
        (s["first_failure_s"] for s in failed if s.get("first_failure_s")), default=None
    )
    steps = next(
        (
            s["counterexample_steps"]
            for s in failed
            if s.get("counterexample_steps") is not None
        ),
        None,
    )
    if rc == 0:
        verdict = "passed"
    elif invariant:
        verdict = "caught"
    else:
        verdict = f"error (exit {rc}, see {log.relative_to(ROOT)})"
    return {
        "mutant": label,
        "verdict": verdict,
        "invariant": invariant or "-",
        "detect_s": f"{first:.1f}" if first is not None else "-",
        "shrunk_steps": str(steps) if steps is not None else "-",
        "wall_s": f"{wall:.0f}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.mutants", description=__doc__.splitlines()[0]
    )
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--profile", default="mutants", help="Hypothesis profile")
    parser.add_argument(
        "--baseline", action="store_true", help="also run the correct system"
    )
    args = parser.parse_args()

    known = catalogue()
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"unknown mutants {unknown}; the catalogue has {known}")
    names = args.names or known
    REPORTS.mkdir(parents=True, exist_ok=True)

    rows = []
    columns = ("mutant", "verdict", "invariant", "detect_s", "shrunk_steps", "wall_s")
    print("  ".join(columns), flush=True)
    if args.baseline:
        targets = sorted({t.split("::")[0] for n in names for t in _targets(n)})
        row = run_one(None, targets, args.profile)
        print("  ".join(str(row[c]) for c in columns), flush=True)
        rows.append(row)
    for name in names:
        row = run_one(name, _targets(name), args.profile)
        print("  ".join(str(row[c]) for c in columns), flush=True)
        rows.append(row)

    mutants = [r for r in rows if r["mutant"] != "(correct system)"]
    caught = sum(1 for r in mutants if r["verdict"] == "caught")
    baseline_ok = all(r["verdict"] == "passed" for r in rows if r not in mutants)
    print(f"mutants caught {caught}/{len(mutants)}")
    return 0 if caught == len(mutants) and baseline_ok else 1


def _targets(name: str) -> list[str]:
    module = importlib.import_module(f"tests.mutants.{name}")
    targets = getattr(module, "TARGETS", None)
    if not targets:
        raise SystemExit(f"tests/mutants/{name}.py must define TARGETS")
    return list(targets)


if __name__ == "__main__":
    sys.exit(main())
