"""The lock that holds an output folder for one run: ``OUT/.lowdim.lock``, recording who holds it.

A dead holder's lock (its process gone, or a lock left empty past a grace period) is taken over;
``runs.output_folder`` takes and releases it around a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path

from lowdim import json_text
from lowdim.errors import LowdimError

LOCK = ".lowdim.lock"
# A lock file still empty this long after it was made belongs to a run that died while taking it.
LOCK_GRACE_SECONDS = 10.0


def holder_record() -> dict:
    """Who this process is, as a lock (or a weight folder's reader mark) records it."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv), "started": time.time()}


def read_record(path: Path) -> dict | None:
    """The record in a lock or mark file; None when it is empty, torn or gone."""
    try:
        record = json_text.loads(path.read_text())
        return record if isinstance(record, dict) else None
    except (OSError, ValueError):  # ValueError: damaged JSON, nested too deeply included (json_text)
        return None


def holder_alive(record: dict | None, path: Path) -> bool:
    """Whether the process ``record`` (read from ``path``) names may still be running: one on another machine
    is taken to be; a record naming no process that can be asked (empty, torn, hand-edited: no host, or no
    usable pid here) only within its grace period."""
    pid = usable_pid(record)
    if record is not None and record_host(record) not in (None, socket.gethostname()):
        return True  # another machine's process cannot be probed from here
    if pid is None:  # a run taking the lock right now, one that died doing so, or a file lowdim did not write
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime < LOCK_GRACE_SECONDS
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def record_host(record: dict) -> str | None:
    """The machine a record names; None where it names none (a file lowdim did not write)."""
    host = record.get("host")
    return host if isinstance(host, str) and host else None


def usable_pid(record: dict | None) -> int | None:
    """The process a record names on this machine, as ``os.kill`` can ask it; None for a missing pid, text, a
    fraction, a bool, 0 and below (which ``os.kill`` takes as a process group, or every process), or past
    what a pid can be."""
    if record is None or record_host(record) is None:
        return None
    pid = record.get("pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31 else None


def describe_holder(record: dict | None) -> str:
    """'pid N on HOST: COMMAND', as a refusal names the holder."""
    if record is None:
        return "a run that is starting"
    host = record_host(record)
    if host is None or host == socket.gethostname() and usable_pid(record) is None:
        return f"a record with no usable pid: {json.dumps(record)[:200]}"
    return f"pid {record.get('pid')} on {host}: {record.get('command') or '?'}"


def acquire_lock(out: Path) -> dict:
    """Take ``out/.lowdim.lock`` or say who holds it; a dead holder's lock is taken over."""
    path = Path(out) / LOCK
    mine = holder_record()
    for _attempt in range(3):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_record(path)
            if holder_alive(holder, path):
                raise LowdimError(f"--out {out} is in use by another run ({describe_holder(holder)}); wait for it to "
                                  f"end or choose another --out (if that run is gone, delete {path})") from None
            # An empty lock past its grace is a run that stopped while it was writing its record.
            whose = describe_holder(holder) if holder is not None else "a run that stopped as it started"
            warnings.warn(f"{out}: taking over the lock of a run that ended without releasing it ({whose})",
                          stacklevel=3)
            # Two runs that find the same dead lock at the same instant can both end up holding it (the
            # second's unlink may remove the first's new lock): a window one unlink wide, accepted.
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(handle, "w") as file:
            json.dump(mine, file)
        return mine
    raise LowdimError(f"--out {out}: could not take {path}; another run keeps taking it")


def folder_in_use(out: Path) -> bool:
    """Whether a live run holds ``out``'s lock (a dead run's lock does not count)."""
    return live_holder(out) is not None


def live_holder(out: Path) -> str | None:
    """Who holds ``out``'s lock, in the words a refusal gives ('pid N on HOST: COMMAND'); None when no live run does."""
    path = Path(out) / LOCK
    if not path.exists():
        return None
    record = read_record(path)
    return describe_holder(record) if holder_alive(record, path) else None


def release_lock(out: Path, mine: dict) -> None:
    path = Path(out) / LOCK
    if read_record(path) == mine:  # never remove a lock that a later run took over
        path.unlink(missing_ok=True)
