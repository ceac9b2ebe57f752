"""A folder of Gradio's uploads and cached copies that belongs to one ``lowdim ui`` process.

Gradio keeps every server's uploads in one shared folder (``$GRADIO_TEMP_DIR``, or ``/tmp/gradio``), each in a
folder named by its content's hash, so two servers given the same photo share one file. A server that removes
its own files when it closes would then remove the other's upload under it ("the upload is gone"). Each
``lowdim ui`` therefore points Gradio at a folder of its own inside that one, readable by its user only, and
removes the whole folder when it closes; a folder whose process died (a second Ctrl-C quits without cleaning
up) is removed by the next server that starts, even one with the dead server's pid (in a container ``lowdim ui``
gets the same pid at each start): a folder of this process's pid that this process did not make is a dead one's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from lowdim_sd.run_lock import holder_alive

PREFIX = "lowdim-ui-"
ENV = "GRADIO_TEMP_DIR"  # what Gradio reads, at each component's creation and at each file it checks

# The folders this process made and has not removed yet: asking whether this process's own pid is alive always
# answers yes, so only this record tells a live server's folder of this pid from a dead one's.
_OWN: set[str] = set()
_MAKING = threading.Lock()  # a second server of this process sweeps only once the first's folder is recorded


def shared_folder() -> Path:
    """Where Gradio puts uploads unless told otherwise: the folder every Gradio server on this machine uses."""
    return Path(os.environ.get(ENV) or Path(tempfile.gettempdir()) / "gradio")


@contextlib.contextmanager
def private_uploads() -> Iterator[Path]:
    """Point Gradio at a new folder of this process's own while the block runs (a page must be built inside
    it: its components read the folder when made), then remove the folder and restore the setting."""
    shared = shared_folder()
    shared.mkdir(parents=True, exist_ok=True)
    with _MAKING:
        remove_dead_servers_folders(shared)
        folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{_host_tag()}-{os.getpid()}-", dir=shared))
        _OWN.add(folder.name)
    before = os.environ.get(ENV)
    os.environ[ENV] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        shutil.rmtree(folder, ignore_errors=True)  # a file that cannot go must not stop the server's exit
        _OWN.discard(folder.name)


def remove_dead_servers_folders(shared: Path) -> list[Path]:
    """Remove the folders of this machine's servers whose process is gone; another machine's (a shared
    GRADIO_TEMP_DIR) and a live server's stay."""
    removed = []
    for folder in shared.glob(f"{PREFIX}{_host_tag()}-*"):
        pid = _pid_of(folder.name)
        if pid is None or folder.is_symlink() or not folder.is_dir():
            continue
        if not _server_alive(pid, folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _server_alive(pid: int, folder: Path) -> bool:
    """Whether the server that made ``folder`` (named with its ``pid``) may still be running."""
    if pid == os.getpid():  # this process: a live server's folder only if this process made it
        return folder.name in _OWN
    return holder_alive({"pid": pid, "host": socket.gethostname()}, folder)


def _host_tag() -> str:
    """This machine, in a folder name (a host name may hold characters a file name should not)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _pid_of(name: str) -> int | None:
    parts = name[len(PREFIX):].split("-")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() and parts[1].isascii() else None
