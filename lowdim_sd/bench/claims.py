"""Claim files, so several bench processes (say, CPU and GPU workers) can share one results folder.

A task is claimed by creating ``<result>.claim`` exclusively; the claim holds the host and process id,
so a claim left by a process that died on this host is recognised as stale and taken over.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path


def _alive(record: dict) -> bool:
    if record.get("host") != socket.gethostname():
        return True  # another machine's process: trust it
    try:
        os.kill(int(record["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError):
        return False
    except PermissionError:
        return True
    return True


def claim(path: Path) -> bool:
    """Try to claim the task whose result is ``path``; False when another live process holds it."""
    marker = path.with_suffix(".claim")
    marker.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                record = json.loads(marker.read_text() or "{}")
            except (OSError, ValueError):
                record = {}
            if not record or _alive(record):  # empty: its owner is still writing it
                return False
            marker.unlink(missing_ok=True)  # stale: its owner is gone
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump({"host": socket.gethostname(), "pid": os.getpid()}, handle)
        return True
    return False


def release(path: Path) -> None:
    path.with_suffix(".claim").unlink(missing_ok=True)
