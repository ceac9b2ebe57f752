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
        record = json.loads(path.read_text())
        return record if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None


def holder_alive(record: dict | None, path: Path) -> bool:
    """Whether the process ``record`` (read from ``path``) names may still be running: one on another machine
    is taken to be; an empty record only within its grace period."""
    if record is None:  # empty or torn: a run taking the lock right now, or one that died doing so
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime < LOCK_GRACE_SECONDS
        return False
    if record.get("host") != socket.gethostname():
        return True  # another machine's process cannot be probed from here
    try:
        os.kill(int(record.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def describe_holder(record: dict | None) -> str:
    """'pid N on HOST: COMMAND', as a refusal names the holder."""
    if record is None:
        return "a run that is starting"
    return f"pid {record.get('pid')} on {record.get('host')}: {record.get('command') or '?'}"


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
