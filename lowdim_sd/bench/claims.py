"""Claim files, so several bench processes (say, CPU and GPU workers) can share one results folder.

A task is claimed by creating ``<result>.claim`` exclusively; the claim holds the host and process id,
so a claim left by a process that died on this host is recognised as stale and taken over. An adapter
file several rows draw is claimed the same way while it is trained (``shared_adapter``).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from lowdim import json_text


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


def claim_file(path: Path) -> Path:
    return path.with_suffix(".claim")


def holder(path: Path) -> dict:
    """Who holds the claim on ``path``: {"host", "pid"}; empty when nobody does (or its owner is still writing it)."""
    try:
        record = json_text.loads(claim_file(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def claim(path: Path) -> bool:
    """Try to claim the task whose result is ``path``; False when another live process holds it."""
    marker = claim_file(path)
    marker.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            record = holder(path)
            if not record or _alive(record):  # empty: its owner is still writing it
                return False
            marker.unlink(missing_ok=True)  # stale: its owner is gone
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump({"host": socket.gethostname(), "pid": os.getpid()}, handle)
        return True
    return False


def release(path: Path) -> None:
    claim_file(path).unlink(missing_ok=True)
