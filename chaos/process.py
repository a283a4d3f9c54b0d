"""Starting server processes that cannot outlive the run that started them.

Every child gets PR_SET_PDEATHSIG(SIGKILL), so when the test process dies, even
by SIGKILL where no cleanup code runs, the kernel kills its servers too. The
signal belongs to the thread that forked the child, so children must be
started from a thread that lives as long as the run (the main thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _child_setup(
    parent_pid: int, uid: int | None, gid: int | None
) -> Callable[[], None]:
    def setup() -> None:
        # Credentials first: changing them clears the parent-death signal.
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

        # The parent may have died before prctl took effect.
        if os.getppid() != parent_pid:
            os._exit(1)

    return setup


def user_ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    user: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session, output to `log_path`, tied to this process."""
    uid = gid = None
    if user is not None and os.geteuid() == 0:
        uid, gid = user_ids(user)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_child_setup(os.getpid(), uid, gid),
        )
    logger.debug("started %s (pid %s)", argv[0], proc.pid)
    return proc


def kill(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGKILL a child (and anything left in its session) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning("pid %s did not exit %.1f s after SIGKILL", proc.pid, timeout)


def terminate(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    kill(proc)


def is_alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (a dead, unreaped process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def session_members(sid: int) -> list[int]:
    """Live processes in session `sid`: a server and everything it forked."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # Fields after the command: state, ppid, pgrp, session, ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """The (IPv4 or IPv6 address, port) pairs that process `pid` listens on."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                # State 0A is LISTEN.
                if cols[3] != "0A" or cols[9] not in inodes:
                    continue
                hex_ip, hex_port = cols[1].split(":")
                found.add((_decode_ip(hex_ip[:width]), int(hex_port, 16)))
    return found


def _decode_ip(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    return str(ipaddress.IPv6Address(b"".join(words)))
