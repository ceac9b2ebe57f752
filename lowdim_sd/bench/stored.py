"""What a ``lowdim bench quality`` results folder holds, read back: its settings, its result files, and whether
the folder can be one at all. Each problem is one line naming the file and what to do about it."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim_sd.bench.stored_values import RESULT_VERSION as RESULT_VERSION  # read from here by callers
from lowdim_sd.bench.stored_values import Damaged, checked_result, checked_settings, printable

# Settings compared as sets: the order of --metrics changes only the order of the columns.
UNORDERED = ("metrics",)


def check_out(out: Path) -> None:
    """One line when ``--out`` cannot be the results folder (a file, a dangling link, a file above it, a
    read-only folder above it), checked without making it, so a job refused later leaves nothing behind."""
    from lowdim_sd.runs import check_folder_target

    check_folder_target(out, "--out")


def make_out(out: Path) -> None:
    """Make the results folder; one line when it cannot be made or written (/proc/x)."""
    from lowdim_sd.runs import probe_writable

    probe_writable(Path(out), f"--out {out}")


def _load(path: Path) -> object:
    try:
        return json_text.loads(Path(path).read_text())
    except (OSError, ValueError) as error:  # ValueError: JSONDecodeError and UnicodeDecodeError
        return error


def read_result(path: Path, prompts: int | None = None, metrics: Sequence[str] | None = None) -> dict:
    """A task's result, every value checked against what a run writes, so the tables only ever see checked values:
    its scores (``prompts`` a metric where the folder's settings say how many) of the ``metrics`` the settings list
    (all it scores without them), and its ``columns`` the headings this lowdim gives those metrics, never the
    file's. A damaged one is named, with the way out (a rerun redoes a task without its file)."""
    record = _load(path)
    try:
        if isinstance(record, Exception):
            raise Damaged(str(record))
        return checked_result(record, Path(path), prompts, metrics)
    except Damaged as why:
        raise LowdimError(f"{printable(path)}: damaged result ({why}); delete it, and a rerun (without --no-run) "
                          f"redoes that task") from None


def read_settings(path: Path) -> dict:
    """The settings the results beside ``path`` were made with, each value checked against what a run writes.
    Deleting a damaged file lets a run with other settings mix with them, so that way out is offered only for a
    command with the same settings; results of another format version are refused by name."""
    stored = _load(path)
    try:
        if isinstance(stored, Exception):
            _refuse_a_long_version(path)
            raise Damaged(str(stored))
        checked = checked_settings(stored)
    except Damaged as why:
        raise LowdimError(f"{path}: damaged ({why}); it records the settings of the results in "
                          f"{Path(path).parent}: restore it (or delete it, if they were made with this command's "
                          f"settings), or use another --out") from None
    if checked["version"] != RESULT_VERSION:
        raise _other_version(path, checked["version"])
    return checked


def _other_version(path: Path, version: object) -> LowdimError:
    return LowdimError(f"{path}: results of format version {version}, which this lowdim does not read (it reads "
                       f"version {RESULT_VERSION}); tabulate them with the lowdim that made them, or use another --out")


def _refuse_a_long_version(path: Path) -> None:
    """Settings whose version is a JSON number of more digits than int() takes (4,300), which json.loads fails on,
    refused as any other version this lowdim does not read, whatever else the file holds: a newer lowdim may write
    what this one cannot read. A negative one is no version any lowdim writes: left to be damage."""
    try:
        stored = json_text.loads_keeping_long_numbers(Path(path).read_text())
    except (OSError, ValueError):
        return
    version = stored.get("version") if isinstance(stored, dict) else None
    if isinstance(version, str) and version.isascii() and version.isdecimal() and not _converts(version):
        raise _other_version(path, version)  # a JSON number kept as text, not a string "2" (damage)


def _converts(digits: str) -> bool:
    try:
        int(digits)
    except ValueError:  # past sys.get_int_max_str_digits()
        return False
    return True


def computed_dtype(dtype: str, device: str) -> str:
    """The dtype a run given ``--dtype`` and ``--device`` computes in, as --dtype names it ('auto' on a CPU:
    'fp32'): two runs differing only in the words for it make the same results."""
    from lowdim_sd.devices import dtype_name, resolve_device, resolve_dtype  # torch: only where a run compares

    return dtype_name(resolve_dtype(dtype, resolve_device(device)))


def changed_settings(wanted: dict, previous: dict, device: str = "auto") -> list[str]:
    """The names of the settings in which ``previous`` differs from ``wanted``, sorted. The dtypes are compared
    as ``computed_dtype`` resolves them on ``device``, the resuming run's: a folder written before settings.json
    recorded the resolved dtype may say 'auto', taken as what auto would be for this run here."""
    def same(key: str) -> bool:
        if key in UNORDERED and isinstance(previous.get(key), list):
            return set(previous[key]) == set(wanted[key])
        if key == "dtype" and isinstance(previous.get(key), str):
            return computed_dtype(previous[key], device) == computed_dtype(wanted[key], device)
        return previous.get(key) == wanted[key]

    return sorted(key for key in wanted if not same(key))


def hypernet_digest(path: Path) -> str:
    """The digest personalize records for a hypernetwork (its header's: config, layers, training run, step),
    read once per file version: every result of a run records it."""
    stat = Path(path).stat()
    return _header_digest(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _header_digest(path: str, mtime_ns: int, size: int) -> str:
    from lowdim.hyper.storage import read_hypernet

    return read_hypernet(path).digest


def recorded_hypernet(hypernet: Path | None) -> dict:
    """What a result records of the hypernetwork its row predicted with (None: a row without one): the file as a
    results folder records one (docs/sd.md, "Paths in files": the network a model ships by its name and that model,
    a user's own by its absolute path) and its digest, by which a rerun and the table tell two networks apart."""
    if hypernet is None:
        return {"hypernet": None, "hypernet_sha256": None}
    from lowdim_sd.recorded_paths import recorded_file

    return {"hypernet": recorded_file(hypernet), "hypernet_sha256": hypernet_digest(hypernet)}


def refuse_other_hypernets(results: list[dict], hypernet: Path, out: Path) -> None:
    """A resumed run given another --hypernet (or the same path retrained) would keep the done rows of the old
    one and tabulate them as this one's: refused before any task runs, naming the row to delete. Compared by
    digest, or for a result from before results recorded one, by where its path leads."""
    from lowdim_sd.recorded_paths import recorded_path, recorded_text

    digest = hypernet_digest(hypernet)
    for record in results:
        if record.get("hypernet") is None:
            continue
        made_with = record.get("hypernet_sha256")
        if made_with == digest or (not made_with and recorded_path(record["hypernet"]) == recorded_path(str(hypernet))):
            continue
        raise LowdimError(f"{out}/results/{record['method']} holds results made with another hypernetwork "
                          f"({printable(recorded_text(record['hypernet']))}, {printable(made_with or 'no digest')}) "
                          f"than --hypernet {hypernet} ({digest}); delete that folder to rerun the row with this one, "
                          f"or use another --out")
