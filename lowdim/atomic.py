"""Writes that never leave half a file: written inside a hidden temp place beside the target, renamed over it in
one step.

Every file lowdim writes (adapters, hypernetworks, weight shards, indexes, records, merged models) goes through
here, so a crash, Ctrl-C or full disk leaves the old file or the new one, never a torn one. What is written lives
in a hidden folder ``.NAME.XXXXXXXX.tmp`` beside the target (NAME cut short before its suffix where the whole
would make too long a name: ``place_name``) until the rename, and so does every temp a writer makes
beside the file it is given (safetensors 0.8's ``save_file`` writes its own ``.tmpXXXXXX`` there first). A file's
bytes are flushed to the disk before the rename that names it, and the rename after it (``lowdim.disk_flush``), so
a power cut too leaves the old file or the new one, where the file system can flush (a disk error at the flush
fails the write). A run killed outright (kill -9, the OOM killer) leaves one place a later run recognises and
sweeps (``sweep_temps``). While a write goes on its place is locked, so a sweep never takes a live one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

from safetensors import SafetensorError

from lowdim.disk_flush import flush_to_disk, flush_tree_to_disk
from lowdim.errors import LowdimError
from lowdim.file_reading import SPECIAL_KINDS, refuse_special, special_kind  # noqa: F401  (moved there; API here too)

fcntl: ModuleType | None  # None where the platform has no folder locks
try:
    import fcntl
except ImportError:  # Windows: no folder locks; a sweep there takes only places an hour old
    fcntl = None

# A temp place's name, and older lowdim's temp files: ".<target name>.<8 characters of mkdtemp/mkstemp>.tmp"
TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")
# The temp a Rust `tempfile::NamedTempFile` (safetensors 0.8's save_file) makes beside the file it writes.
WRITER_TEMP = re.compile(r"^\.tmp[A-Za-z0-9]{6}$")
# The files lowdim writes into a run's folder (adapters, shards, checkpoints, indexes, records, previews): what a
# sweep with no target takes temps of.
RUN_FILE_SUFFIXES = frozenset({".safetensors", ".json", ".jsonl", ".png"})
UNLOCKED_PLACE_AGE = 3600  # seconds: where folders cannot be locked, a place this old is no write's any more
# The most of a target's name a place's name carries: ".NAME.XXXXXXXX.tmp" is 14 bytes longer than NAME, and must
# fit where NAME does (255 bytes on most file systems, 143 on eCryptfs).
PLACE_NAME_BYTES = 120
# What safetensors' Rust writer says of an OS error: "... I/O error: No space left on device (os error 28)".
RUST_IO_ERROR = re.compile(r"I/O error: (?P<reason>.+?)(?: \(os error (?P<code>\d+)\))?$")
# What the OS refuses of the file being written whoever's call meets it, a writer's write() on its open file
# naming none: a full disk or quota, a file-size limit (ulimit -f), a name too long, a read-only file system.
TARGET_REFUSALS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG, errno.EROFS})


def atomic_write(path: Path, write: Callable[[str], object], replace: bool = True) -> Path:
    """``write(temp)`` fills a temp file (of ``path``'s name, in a hidden place beside it), which then replaces
    ``path`` in one rename: readers see the old file or the new one, never half of one, and a failed write
    leaves nothing. ``replace=False``: published only where nothing is at ``path`` at that moment, else
    FileExistsError and nothing written; a check made earlier cannot promise that, as another run may write
    ``path`` between the check and this step.

    What the OS refuses of ``path`` (a full disk, a file-size limit, a name too long, a read-only file system) is
    a LowdimError naming it, which is no OSError: catch LowdimError, not OSError, for a full disk. Any other
    error of ``write`` (a source file it reads gone, an encoder's own refusal) is raised as it was."""
    path = Path(path)
    writing = None  # the temp while the writer fills it: the writer's errors are the target's only where they say so
    try:
        if path.is_dir():
            raise LowdimError(f"{path}: is a folder; give a file name to write")
        with temp_place(path) as temp:
            writing = temp
            write(str(temp))
            writing = None
            os.chmod(temp, 0o666 & ~current_umask())  # mkstemp-style writers make 0600; a plain open() would not
            flush_to_disk(temp)
            if replace:
                os.replace(temp, path)
                taken = None
            else:
                taken = _link_new(temp, path)
            _flush_the_name(path)
    except (OSError, SafetensorError) as error:  # a full disk, a file-size limit, a name too long: all work lost
        if not refused_target(error, path, writing):
            raise  # not the disk's doing: a bug's, or a source's the error names, which keeps its traceback
        raise LowdimError(f"{shortened(str(path))}: could not write ({os_reason(error, path)})") from error
    if taken is not None:
        raise taken
    return path


def _flush_the_name(path: Path) -> None:
    """The folder holding the new name ``path`` flushed: the write is done either way (its bytes are on the disk and
    the name is in place), so a failure here is a warning, not a write that failed."""
    try:
        flush_to_disk(path.parent)
    except OSError as error:
        warnings.warn(f"{shortened(str(path))}: written, but its folder could not be flushed to the disk "
                      f"({os_reason(error)}): a power cut now may lose the new name", stacklevel=3)


def refused_target(error: OSError | SafetensorError, path: Path, temp: Path | None = None) -> bool:
    """Whether ``error`` is the OS refusing to write ``path``: any OSError outside the writer (``temp`` None); from
    the writer writing ``temp``, one naming ``temp``, its place or ``path``, or naming no file with a reason only
    the written file can have (TARGET_REFUSALS); safetensors' I/O error alike (it names no file)."""
    if isinstance(error, SafetensorError):
        found = RUST_IO_ERROR.search(str(error))
        return found is not None and (temp is None or found.group("code") is None
                                      or int(found.group("code")) in TARGET_REFUSALS)
    if temp is None:
        return True
    if error.filename is None:
        return error.errno in TARGET_REFUSALS
    named = Path(os.fsdecode(error.filename))
    return named in (path, temp.parent) or named.parent == temp.parent


def shortened(text: str, most: int = 100) -> str:
    """``text`` cut in its middle to ``most`` characters: a name the OS found too long, said in one line."""
    return text if len(text) <= most else f"{text[:most * 2 // 3]}…{text[-(most // 3):]}"


def _link_new(temp: Path, path: Path) -> FileExistsError | None:
    """Give the finished ``temp`` the name ``path`` only where that name is free, in one step (a link fails on a
    name that exists); the temp itself goes with its place. Returns (not raises: it is no failed write) the
    FileExistsError of a name already taken."""
    try:
        os.link(temp, path)
    except FileExistsError as taken:
        return taken
    except OSError:  # a filesystem without hard links (FAT, some network mounts): checked, then renamed
        if os.path.lexists(path):
            return FileExistsError(errno.EEXIST, "already exists", str(path))
        os.replace(temp, path)
    return None


def os_reason(error: BaseException, path: str | os.PathLike[str] | None = None) -> str:
    """The OS's reason ``error`` gives, as its one line says it: "No space left on device", "File too large"; for
    a name too long, with the most the file system holding ``path`` takes (safetensors' writer says the OS's code
    in its text: "File name too long (os error 36)")."""
    if isinstance(error, SafetensorError):
        found = RUST_IO_ERROR.search(str(error))
        if found is None:
            return str(error)
        reason, code = found.group("reason"), found.group("code")
        number = int(code) if code else None
    else:
        reason, number = getattr(error, "strerror", None) or str(error), getattr(error, "errno", None)
    if number == errno.ENAMETOOLONG and path is not None:
        most = _name_max(Path(path))
        return f"{reason}; {most} bytes at most" if most else reason
    return reason


def _name_max(path: Path) -> int | None:
    """The longest name, in bytes, the file system holding ``path`` (or the folder it would be made in) takes."""
    for folder in path.absolute().parents:
        try:
            return os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return None


def place_name(name: str) -> str:
    """The target ``name`` as its temp place's name carries it: whole up to PLACE_NAME_BYTES bytes, else cut
    short before its suffix, which a sweep of a run's folder goes by."""
    if len(os.fsencode(name)) <= PLACE_NAME_BYTES:
        return name
    suffix = Path(name).suffix if len(os.fsencode(Path(name).suffix)) <= PLACE_NAME_BYTES // 4 else ""
    head = name[:len(name) - len(suffix)]
    while len(os.fsencode(head + suffix)) > PLACE_NAME_BYTES:
        head = head[:-1]
    return head + suffix


def replace_folder(staging: Path, out: Path, replace: bool = True) -> None:
    """Rename the folder ``staging`` (written in ``temp_place(out)``) to ``out``. A folder already there is moved
    aside into a temp place first, as os.replace cannot replace a folder, and removed with it after; put back when
    the rename fails. ``replace=False``: only onto nothing or an empty folder (one rename, which fails on a folder
    another run filled meanwhile), else FileExistsError and ``out`` as it was."""
    flush_tree_to_disk(staging)  # its files' bytes on the disk before the name that publishes them
    _rename_folder(staging, Path(out), replace)
    _flush_the_name(Path(out))


def _rename_folder(staging: Path, out: Path, replace: bool) -> None:
    if not replace:
        try:
            os.rename(staging, out)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise FileExistsError(errno.EEXIST, "already exists", str(out)) from error
            raise
        return
    if not out.is_dir():
        os.replace(staging, out)
        return
    with temp_place(out, keep_on_error=True) as earlier:
        try:
            os.replace(out, earlier)
            os.replace(staging, out)
        except BaseException:  # a Ctrl-C between the two renames included
            if earlier.exists() and not out.exists():
                os.replace(earlier, out)  # the earlier folder back where it was
            raise


@contextlib.contextmanager
def temp_place(path: Path, keep_on_error: bool = False) -> Iterator[Path]:
    """Inside: where to write ``path`` before renaming it there, ``.NAME.XXXXXXXX.tmp/NAME`` beside it, locked
    while inside and removed with all it holds on the way out (done, failed or interrupted). ``keep_on_error``:
    a place that still holds something when the block fails is kept (it may hold the only copy of a file moved
    aside), for the user or a later sweep."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    place, handle, done = None, None, False
    try:
        while place is None:
            place, handle = _fresh_place(path)
        yield place / path.name
        done = True
    finally:
        if place is not None and (done or not keep_on_error or not any(place.iterdir())):
            shutil.rmtree(place, ignore_errors=True)
        if handle is not None:
            os.close(handle)


def _fresh_place(path: Path) -> tuple[Path | None, int | None]:
    """A new held place and its lock's handle, or (None, None) when a sweep took it between its making and its
    locking (a lock waits while a sweep that got it first removes it)."""
    place, handle = None, None
    try:
        place = tempfile.mkdtemp(prefix=f".{place_name(path.name)}.", suffix=".tmp", dir=path.parent)
        handle = _open_folder(place)
        if handle is None or _lock(handle, wait=True) is None or _same(handle, place):
            return Path(place), handle
    except FileNotFoundError:
        if place is None or Path(place).exists():
            raise
        return None, None  # swept between its making and its opening: make another
    except BaseException:
        if place is not None:
            shutil.rmtree(place, ignore_errors=True)
        if handle is not None:
            os.close(handle)
        raise
    os.close(handle)
    return None, None


def _open_folder(folder: str | Path) -> int | None:
    """A handle to lock ``folder`` by; None where locks cannot be had (Windows, or a folder that will not open).
    A folder a sweep removed before it could be opened raises FileNotFoundError."""
    if fcntl is None:
        return None
    try:
        return os.open(folder, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError:
        return None


def _lock(handle: int, wait: bool) -> bool | None:
    """Take the folder's lock: True, False when a write holds it, None where the filesystem has no such locks
    (NFS emulates flock with locks a read-only handle cannot take)."""
    if fcntl is None:  # no handle is opened where there is no fcntl (_open_folder)
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _same(handle: int, place: str) -> bool:
    try:
        return os.path.samestat(os.fstat(handle), os.stat(place))
    except FileNotFoundError:
        return False


def sweep_temps(folder: Path, target: str | None = None) -> dict[Path, int]:
    """Remove what killed writes left in ``folder`` (only those for the file ``target``, when given, else those for
    the kinds of file lowdim writes there): temp places no write holds that hold nothing but their target and
    writers' temps, and older lowdim's temp files (without a target, only those an hour old: another program may
    be writing one of the same shape right now). Returns what was removed with the bytes each took; anything else
    (a user's ``.notes.abcd1234.tmp`` folder) stays."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    removed = {}
    for entry in sorted(folder.iterdir()):
        found = TEMP_NAME.match(entry.name)
        if not found or entry.is_symlink() or not _ours(found.group("target"), target):
            continue
        size = _size(entry)
        if entry.is_file():
            if target is not None or _older_than(entry, UNLOCKED_PLACE_AGE):  # else maybe another program's, live
                entry.unlink(missing_ok=True)
                removed[entry] = size
        elif entry.is_dir() and _swept_place(entry, found.group("target")):
            removed[entry] = size
    return removed


def _ours(name: str, target: str | None) -> bool:
    """Whether a temp for the file ``name`` is one this sweep may take: the ``target`` asked for, else only temps
    of the kinds of file lowdim writes into a run's folder (a user's ``.notes.txt.x1y2z3w4.tmp`` is not)."""
    return name == place_name(target) if target is not None else Path(name).suffix.lower() in RUN_FILE_SUFFIXES


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


def _swept_place(place: Path, target: str) -> bool:
    """Remove ``place`` when it holds only what a write puts there and no write holds it: a place that cannot be
    locked here counts as held until it is an hour old (no write of one file takes that long)."""
    try:
        if not all(place_name(name) == target or WRITER_TEMP.match(name) for name in os.listdir(place)):
            return False
        old = time.time() - place.stat().st_mtime > UNLOCKED_PLACE_AGE
    except OSError:
        return False
    try:
        handle = _open_folder(place)
    except FileNotFoundError:  # its write finished meanwhile, and took its place with it
        return False
    try:
        locked = _lock(handle, wait=False) if handle is not None else None
        if locked or (locked is None and old):
            shutil.rmtree(place, ignore_errors=True)
            return True
        return False
    finally:
        if handle is not None:
            os.close(handle)


def describe_removed(removed: dict[Path, int]) -> str:
    """What a sweep says it removed: the names and the space they took."""
    return (f"removed what killed writes left: {', '.join(path.name for path in removed)} "
            f"({sum(removed.values()) / 2**20:.1f} MB)")


def _size(path: Path) -> int:
    """The bytes ``path`` takes on disk (a writer may size its file first and fill it later: a sparse file)."""
    try:
        files = [path] if path.is_file() else [item for item in path.rglob("*") if item.is_file()
                                               and not item.is_symlink()]
        return sum(_disk_bytes(item.stat()) for item in files)
    except OSError:  # a write finishing meanwhile
        return 0


def _disk_bytes(stat: os.stat_result) -> int:
    return stat.st_blocks * 512 if hasattr(stat, "st_blocks") else stat.st_size


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
