"""Lists processes a bullproof run left behind; exits 1 if there are any.

Every process that a run starts inherits its `BULLPROOF_RUN_ID` from the run's
environment, so this finds them by that mark, whatever they renamed themselves
to (redis-server rewrites its process title). Zombies are dead and not counted.
"""

from __future__ import annotations

import sys
from pathlib import Path


def leftovers(run_id: str) -> list[str]:
    mark = f"BULLPROOF_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if mark in environ and stat.rpartition(")")[2].split()[0] != "Z":
            found.append(f"{entry.name} {cmdline.decode(errors='replace').strip()}")
    return found


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1]:
        print("usage: leftovers.py RUN_ID", file=sys.stderr)
        return 2
    left = leftovers(sys.argv[1])
    for line in left:
        print(f"left running: {line}")
    if left:
        print(f"{len(left)} process(es) outlived the run", file=sys.stderr)
        return 1
    print("no process of the run is left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
