"""Lists processes a bullproof run left behind; exits 1 if there are any.

A process belongs to the run when its environment carries the run's
`BULLPROOF_RUN_ID`, or when it works in a bullproof run dir whose owner is gone
or belonged to the run: redis-server overwrites its environment with its
process title, but it keeps working in its node's dir. Zombies are dead and
not counted.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

RUN_DIR_PREFIX = os.path.join(tempfile.gettempdir(), "bullproof-")


def _environ(pid: str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _alive(pid: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _run_dir_of(pid: str) -> Path | None:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    if not cwd.startswith(RUN_DIR_PREFIX):
        return None
    rel = cwd[len(os.path.dirname(RUN_DIR_PREFIX)) + 1 :]
    return Path(os.path.dirname(RUN_DIR_PREFIX)) / rel.split("/")[0]


def leftovers(run_id: str) -> list[str]:
    mark = f"BULLPROOF_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        pid = entry.name
        if not pid.isdigit() or not _alive(pid) or int(pid) == os.getpid():
            continue
        ours = mark in _environ(pid)
        run_dir = _run_dir_of(pid)
        if not ours and run_dir is not None:
            try:
                owner = (run_dir / "owner.pid").read_text().strip()
            except OSError:
                owner = ""
            ours = not owner or not _alive(owner) or mark in _environ(owner)
        if ours:
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            found.append(f"{pid} {cmdline.decode(errors='replace').strip()}")
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
