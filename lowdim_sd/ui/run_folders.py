"""The runs folder of ``lowdim ui --out``: one folder per finished run, read back after a restart.

A run is written to a hidden ``.NAME.partial`` folder and renamed to ``NAME`` only once its ``run.json``
is written, so the list never shows a half-written run; a server that died leaves only hidden folders,
which the next start removes.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import reprlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.option_words import counted
from lowdim_sd import runs
from lowdim_sd.ui.checks import NotOffered
from lowdim_sd.ui.run_links import (
    RUN_FILE,
    HardLinkedRun,
    check_own_record,
    hard_linked_line,
    link_target,
    linked_part,
    named_outside,
    symlinked_line,
)

PARTIAL = ".partial"
EXPORTS = {"diffusers": "diffusers / peft (load_lora_weights)", "kohya": "kohya (A1111, ComfyUI, Forge)"}
ADAPTER_LABEL = "lowdim adapter"
DOWNLOADS = "downloads"  # NAME.lowdim.safetensors and the like: each run's own names in a browser's Downloads
# The files personalize writes that a run offers as downloads, by label: a run.json naming another label is damaged.
WRITTEN_DOWNLOADS = {ADAPTER_LABEL: "adapter.safetensors",
                     **{label: f"adapter.{fmt}.safetensors" for fmt, label in EXPORTS.items()},
                     "preview": "preview.png"}
GALLERY_FILE = re.compile(r"gallery/[0-9]{2,}\.png")  # the studio's f"gallery/{index:02d}.png"


@dataclass
class RunRecord:
    """A finished run as the page shows it, read back from its folder."""

    name: str
    folder: Path
    settings: dict
    stages: dict[str, float]
    gallery: list[tuple[Path, str]] = field(default_factory=list)  # (picture, caption)
    downloads: dict[str, Path] = field(default_factory=dict)  # label -> file
    notes: list[str] = field(default_factory=list)  # what the run warned of, e.g. a preview it had to skip

    @property
    def total_seconds(self) -> float:
        return sum(self.stages.values())

    @property
    def adapter(self) -> Path:
        return self.downloads[ADAPTER_LABEL]


def list_runs(out: Path) -> list[str]:
    """Finished runs in ``out``, newest first (hidden partial folders are not runs)."""
    return sorted((name for name in _finished(out) if _readable(out, name)), reverse=True)


def unreadable_runs(out: Path) -> list[str]:
    """Finished runs in ``out`` left out of the list: their record this lowdim cannot read (damaged, or another
    version's shape), their folder or ``run.json`` a symlink, or a file of theirs hard-linked from outside their
    folder (run_links.py); ``unreadable_runs_line`` says which and why."""
    return sorted(_refused(out))


def unreadable_runs_line(out: Path) -> str:
    """Why runs in ``out`` are left out of the list, each reason once, or '': '1 run in OUT has a run.json this
    lowdim cannot read (NAME): its files are still in OUT/NAME', '1 run in OUT is left out as a symlink, which
    lowdim never makes (OUT/NAME -> TARGET): replace the link with a copy of what it leads to', '1 run in OUT is
    left out as a file of it is also linked from outside its folder (OUT/NAME/FILE; a backup made with hard
    links, cp -al?): copy the run's folder with cp -a (not -al) to open it', joined with '; '."""
    refused = _refused(out)
    links = {name: link for name in refused if (link := linked_part(out / name)) is not None}
    hard = {name: error.file for name, error in refused.items() if isinstance(error, HardLinkedRun)}
    damaged = [name for name in refused if name not in links and name not in hard]
    return "; ".join(line for line in (_damaged_line(out, damaged), symlinked_line(out, links),
                                       hard_linked_line(out, hard)) if line)


def _refused(out: Path) -> dict[str, LowdimError]:
    """The finished runs in ``out`` that ``read_run`` refuses, by name (sorted), with its refusal."""
    refused = {}
    for name in sorted(_finished(out)):
        try:
            read_run(out, name)
        except LowdimError as error:
            refused[name] = error
    return refused


def _damaged_line(out: Path, names: list[str]) -> str:
    if not names:
        return ""
    shown = names[:3] + (["..."] if len(names) > 3 else [])
    folders = ", ".join(str(out / name) for name in names[:3]) + (", ..." if len(names) > 3 else "")
    if len(names) == 1:
        return f"1 run in {out} has a {RUN_FILE} this lowdim cannot read ({names[0]}): its files are still in {folders}"
    return (f"{len(names)} runs in {out} have a {RUN_FILE} this lowdim cannot read ({', '.join(shown)}): their files "
            f"are still in {folders}")


def _finished(out: Path) -> list[str]:
    """The folders in ``out`` holding a run.json (hidden partial folders are not runs)."""
    if not out.is_dir():
        return []
    return [p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / RUN_FILE).is_file()]


def _readable(out: Path, name: str) -> bool:
    """A run whose record was damaged after it finished is left out of the list, not shown to fail on Open."""
    try:
        read_run(out, name)
    except LowdimError:
        return False
    return True


# What the OS says of a name it refuses as a file's (over 255 bytes; a character FAT or SMB forbid): no run has it.
# Python 3.11's is_file passes these on; any other error (a folder it may not read) is not said away as no run.
REFUSED_NAME = (errno.ENAMETOOLONG, errno.EINVAL)


def is_run(out: Path, name: object) -> bool:
    """Whether ``name`` is a finished run's in ``out``: never a hidden folder, nor a path out of ``out``."""
    if not (isinstance(name, str) and name and not name.startswith(".") and "/" not in name and "\\" not in name):
        return False
    try:
        return (out / name / RUN_FILE).is_file()
    except OSError as error:
        if error.errno in REFUSED_NAME:
            return False
        raise


def _echoed(name: object) -> object:
    """A name asked for, as a line that says there is no such run echoes it: a client may send one of any length.
    Every name lowdim gives a run (a stamp, the photo's name cut to 40 characters, a number) is said whole."""
    return f"{name[:40]}…" if isinstance(name, str) and len(name) > 64 else name


def chosen_run(out: Path, name: object) -> RunRecord:
    """The run picked in *Earlier runs*. Its list takes any value (Gradio's own check would print a traceback
    and name no control), and a client other than the page may send a name it never listed: one line."""
    if not name:
        raise LowdimError("pick an earlier run first")
    if not (isinstance(name, str) and is_run(out, name)):  # is_run refuses a non-str too: said here for read_run
        raise NotOffered(f"Earlier runs has no run {_echoed(name)!r}: pick one it lists (the finished runs in {out})")
    return read_run(out, name)


def read_run(out: Path, name: str) -> RunRecord:
    """The finished run ``out/NAME`` as its ``run.json`` says, checked: a run folder may come from someone else
    (shared, unpacked into ``--out``), and the page serves every file it names to whoever reaches the page."""
    folder = out / name
    if not is_run(out, name):
        raise LowdimError(f"no finished run '{_echoed(name)}' in {out}")
    link = linked_part(folder)  # lowdim renames a real folder there and writes a plain run.json
    if link == folder:
        raise LowdimError(f"run '{name}' in {out}: its folder is a symlink (to {link_target(link)}), which lowdim "
                          f"never makes: copy the run's folder into {out} to open it")
    if link is not None:
        raise LowdimError(f"run '{name}' in {out}: its {RUN_FILE} is a symlink (to {link_target(link)}), which "
                          f"lowdim never makes: put a copy of the file it leads to in its place to open the run")
    check_own_record(folder)  # before it is read: a backup's cp -al links every file of the run
    try:
        record = json_text.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        return _checked_record(name, folder, record)
    except DamagedRecord as error:
        why = str(error)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # not UTF-8, not JSON, too deep
        why = str(error) if isinstance(error, json_text.NestedTooDeeply) else type(error).__name__
    raise LowdimError(f"run '{name}' in {out}: its {RUN_FILE} is damaged ({why}); its files are still in {folder}")


def _shown(value: object) -> str:
    """A value from the record in a one-line message, cut short: a shared run.json may hold anything."""
    short = reprlib.Repr()  # keyword settings are Python 3.12's
    short.maxstring = short.maxother = 160
    short.maxlist = short.maxdict = 4
    return short.repr(value)


class DamagedRecord(ValueError):
    """What in a ``run.json`` is not as ``write_record`` writes it (a path out of its folder, a stage's time that
    is no number): the run is left out of the list, and Open says this."""


def _checked_record(name: str, folder: Path, record: object) -> RunRecord:
    record = _mapping(record, "the record")
    settings = _mapping(record.get("settings"), "settings")
    if not isinstance(settings.get("model"), str):  # what Draw loads the run's adapter on
        raise DamagedRecord(f"settings name no model: {_shown(settings.get('model'))}")
    notes = record.get("notes", [])  # older runs kept none
    if not (isinstance(notes, list) and all(isinstance(note, str) for note in notes)):
        raise DamagedRecord("notes are not a list of lines")
    return RunRecord(name, folder, settings, _stages(record.get("stages")), _gallery(folder, record.get("gallery")),
                     _downloads(folder, record.get("downloads")), notes)


def _mapping(value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise DamagedRecord(f"{what} is not a JSON object")
    return value


def _stages(value: object) -> dict[str, float]:
    stages = _mapping(value, "stages")
    for stage, seconds in stages.items():
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise DamagedRecord(f"stage {_shown(stage)} took {_shown(seconds)} seconds")
    if not math.isfinite(sum(stages.values())):  # the page shows the total
        raise DamagedRecord("stages add up to no finite time")
    return stages


def _gallery(folder: Path, value: object) -> list[tuple[Path, str]]:
    if not (isinstance(value, list) and all(isinstance(item, dict) for item in value)):
        raise DamagedRecord("gallery is not a list of pictures")
    gallery = []
    for item in value:
        file, caption = item.get("file"), item.get("caption")
        if not isinstance(caption, str):
            raise DamagedRecord(f"gallery picture {_shown(file)} has no caption: {_shown(caption)}")
        if not (isinstance(file, str) and GALLERY_FILE.fullmatch(file)):
            raise DamagedRecord(f"gallery picture {_shown(file)} is not one lowdim writes (gallery/NN.png)")
        gallery.append((_own_file(folder, file, f"gallery picture {_shown(file)}"), caption))
    return gallery


def _downloads(folder: Path, value: object) -> dict[str, Path]:
    downloads = _mapping(value, "downloads")
    for label in downloads:
        if label not in WRITTEN_DOWNLOADS:
            raise DamagedRecord(f"a download labelled {_shown(label)}, which lowdim never writes")
    if ADAPTER_LABEL not in downloads:  # what Draw draws
        raise DamagedRecord(f"no {ADAPTER_LABEL!r} download")
    return {label: _own_file(folder, file, f"download {_shown(label)} ({_shown(file)})")
            for label, file in downloads.items()}


def _own_file(folder: Path, file: object, what: str) -> Path:
    """``folder/file``, where ``file`` is a relative path to a plain file in the run folder, through no symlink
    out of it and with no hard link out of it: Gradio serves what the page hands it from anywhere under the
    server's folder or the temp folder."""
    if not (isinstance(file, str) and file and "\\" not in file) or PurePath(file).anchor or ".." in PurePath(
            file).parts:
        raise DamagedRecord(f"{what} is not a path inside the run folder")
    path = folder / file
    try:
        real = path.resolve(strict=True)
        inside = real.is_relative_to(folder.resolve(strict=True))
        plain = real.is_file() and not file.endswith("/")
    except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
        raise DamagedRecord(f"{what} is missing") from None
    if not inside:
        raise DamagedRecord(f"{what} leads out of the run folder")
    if not plain:  # a folder, a FIFO, a device
        raise DamagedRecord(f"{what} is not a plain file")
    if named_outside(real, folder):  # a backup's cp -al: not damage, and named as what it is
        raise HardLinkedRun(folder, file)
    return path


def write_record(work: Path, name: str, settings: dict, stages: dict[str, float], gallery: list[dict],
                 notes: list[str]) -> None:
    """The run's ``run.json``, written last: its presence marks the run done. Its downloads are the files
    personalize wrote, linked under the run's name (no second copy on disk)."""
    downloads = {}
    (work / DOWNLOADS).mkdir()
    for label, file in WRITTEN_DOWNLOADS.items():
        if (work / file).is_file():
            own = f"{DOWNLOADS}/{name}.{_suffix(file)}"
            _link_or_copy(work / file, work / own)
            downloads[label] = own
    record = {"settings": settings, "stages": stages, "gallery": gallery, "downloads": downloads, "notes": notes}
    (work / RUN_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")


def _suffix(file: str) -> str:
    """'adapter.kohya.safetensors' -> 'kohya.safetensors'; 'adapter.safetensors' -> 'lowdim.safetensors'."""
    stem, _, rest = file.partition(".")
    return "lowdim.safetensors" if file == "adapter.safetensors" else rest if stem == "adapter" else file


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, target)


# A run's hidden folder holds no lock from its claim until personalize takes one, and again from personalize's end
# until the folder is renamed: another server starting then must leave it, so a lockless one goes only once old.
PARTIAL_GRACE_S = 15 * 60


def clean_partials(out: Path) -> list[Path]:
    """Remove the hidden folders of runs that died with an earlier server (their lock is not alive, or they have
    none and are older than ``PARTIAL_GRACE_S``)."""
    removed = []
    for folder in out.glob(f".*{PARTIAL}") if out.is_dir() else []:
        if not runs.folder_in_use(folder) and not _claimed_just_now(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _claimed_just_now(folder: Path) -> bool:
    if (folder / runs.LOCK).exists():  # a lock that is not alive: its run is gone
        return False
    try:
        return time.time() - folder.stat().st_mtime < PARTIAL_GRACE_S
    except OSError:
        return False


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "photo"


def claim_run_name(out: Path, photo: Path) -> str:
    """A new run's name, claimed by making its hidden folder ``.NAME.partial`` (an exclusive mkdir): another server
    on the same ``out`` naming a run of a photo of the same name in the same second takes the next name."""
    stamp, stem = time.strftime("%Y%m%d-%H%M%S"), _slug(photo.stem)
    name, number = f"{stamp}-{stem}", 2
    while True:
        if not (out / name).exists():
            try:
                (out / f".{name}{PARTIAL}").mkdir()  # not parents: a vanished --out is an error, not a taken name
                return name
            except FileExistsError:
                pass
        name, number = f"{stamp}-{stem}-{number}", number + 1


def publish_run(work: Path, out: Path, name: str) -> str:
    """Rename a finished run's hidden folder to ``out/NAME`` and return the name it took. Where a folder got the
    name since the claim (a `lowdim personalize -o OUT/NAME` typed meanwhile), the run takes the next free
    ``NAME-2``, ``NAME-3``...: never into that run's folder, never removing its own. Its downloads keep the
    name they were written under."""
    number = 2
    target = out / name
    while True:
        if not target.exists():
            try:  # POSIX replaces an empty folder: one made in the instant since the check is taken, accepted
                work.rename(target)
                return target.name
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise
        target, number = out / f"{name}-{number}", number + 1
        while (out / f".{target.name}{PARTIAL}").exists():  # another run's claim
            target, number = out / f"{name}-{number}", number + 1


def kept_runs_line(out: Path) -> str:
    """'3 finished runs are kept in OUT': what a stopped server leaves, those Earlier runs leaves out included."""
    count = len(_finished(out))
    return f"{counted(count, 'finished run')} {'is' if count == 1 else 'are'} kept in {out}"
