"""Who reads a weight folder now: each live ``WeightDataset`` (train-hypernet's) leaves a mark in
``FOLDER/.lowdim.readers/``, so that a ``lowdim precompute`` into the same folder leaves the shards and rows
that reader may still open alone (review AQ1: it removed them, and hours of training died on a missing shard).

A mark records pid, host and command as a run's lock does (``lowdim_sd.run_lock``), and is judged stale the
same way: its process gone, or the file still empty past the grace period. It goes when the last dataset (or
subset of one) holding it is collected, or at exit; a killed reader's mark is swept by the next precompute.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import weakref
from pathlib import Path

from lowdim_sd.run_lock import describe_holder, holder_alive, holder_record, read_record

READERS = ".lowdim.readers"


class ReaderMark:
    """This process's mark in a weight folder while a dataset reads it; ``path`` is None where the folder could
    not take one (read-only: no precompute of this user can write there either)."""

    def __init__(self, folder: Path) -> None:
        self.path = _write_mark(Path(folder) / READERS)
        if self.path is not None:
            weakref.finalize(self, _remove_mark, self.path, os.getpid())

    def __reduce__(self) -> tuple:
        # A DataLoader worker's copy of a dataset holds no mark (None): its parent's mark covers it. Keeping the
        # parent's mark is not this method's doing: an unpickled copy gets no finalizer (__init__ does not run),
        # and a forked copy's finalizer leaves the mark to its parent (the pid check in _remove_mark).
        return (_no_mark, ())


def _no_mark() -> None:
    return None


def _write_mark(folder: Path) -> Path | None:
    record = json.dumps(holder_record())
    for _attempt in range(3):  # the folder may be removed by the last other reader between mkdir and open
        path = folder / f"{os.getpid()}-{secrets.token_hex(4)}.json"
        try:
            folder.mkdir(exist_ok=True)
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileNotFoundError:
            continue
        except OSError:  # a read-only folder: read without a mark
            return None
        with os.fdopen(handle, "w") as file:
            file.write(record)
        return path
    return None


def _remove_mark(path: Path, owner: int) -> None:
    if os.getpid() != owner:  # a forked worker's copy of the finalizer: the mark is its parent's
        return
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # another reader's mark is still there
        path.parent.rmdir()


def live_readers(folder: Path) -> list[str]:
    """The runs in other processes that read ``folder`` now ('pid N on HOST: COMMAND', with the mark to delete
    if it is gone where HOST is another machine); a dead reader's mark on this machine is removed on the way.
    This process's own datasets do not count: one process runs one job at a time (a precompute's own
    ``--init`` reads the folder it writes)."""
    marks = Path(folder) / READERS
    if not marks.is_dir():
        return []
    found = []
    for path in sorted(marks.glob("*.json")):
        record = read_record(path)
        if record is not None and record.get("pid") == os.getpid() and record.get("host") == socket.gethostname():
            continue
        if holder_alive(record, path):
            # Another host's process cannot be asked whether it lives (a killed job's mark stays): say the cure.
            foreign = record is not None and record.get("host") != socket.gethostname()
            found.append(describe_holder(record) + (f"; if that run is gone, delete {path}" if foreign else ""))
        else:
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # only when empty: a reader may be writing its mark right now
        marks.rmdir()
    return found


def readers_words(folder: Path, readers: list[str]) -> str:
    """'another run reads W (pid N on HOST: COMMAND)': up to two of them named."""
    shown = "; ".join(readers[:2]) + ("; ..." if len(readers) > 2 else "")
    who = "another run reads" if len(readers) == 1 else f"{len(readers)} other runs read"
    return f"{who} {folder} ({shown})"
