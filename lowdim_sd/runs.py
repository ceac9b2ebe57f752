"""The skeleton every training run shares (``train``, ``precompute``, ``train-hypernet``, ``personalize``).

One place for each policy a run follows around its loop:

* the output folder: checked usable before any work, locked to one run at a time (``lowdim_sd.run_lock``),
  cleared of the temp files a crashed write left behind, and never overwritten without ``--overwrite``;
* a stop (Ctrl-C, out of memory): what was kept and how to continue, one line; Ctrl-C becomes
  ``Interrupted``, which the CLI prints before exiting 130;
* hand-written mixed precision for the single-process engine (see ``autocast``);
* the console of the progress bars (stderr), which ``runs.progress`` hands to each bar; the bar itself and the
  listener that hears every bar (the web UI's progress) are ``lowdim_sd.progress_bars``' (``runs.listen`` and
  ``runs.report`` re-exported here).

Checkpoint files live in ``lowdim_sd.checkpoints``; defaults in ``lowdim_sd.defaults``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import torch

from lowdim.atomic import os_reason
from lowdim.errors import LowdimError
from lowdim.option_words import Wording, either
from lowdim.scoped import scoped
from lowdim_sd import progress_bars
from lowdim_sd.progress_bars import Advance
from lowdim_sd.progress_bars import listen as listen  # re-exported: callers name runs.listen, runs.report
from lowdim_sd.progress_bars import report as report
from lowdim_sd.run_lock import LOCK as LOCK  # re-exported: tests and callers name it runs.LOCK
from lowdim_sd.run_lock import acquire_lock, release_lock
from lowdim_sd.run_lock import folder_in_use as folder_in_use  # re-exported: the web UI asks runs.folder_in_use

Run = TypeVar("Run", bound=Callable[..., Any])  # a run(job, ...) that one_run_per_folder decorates
MIXED_PRECISION = ("no", "fp16", "bf16")
RESUME = Wording("the same command plus --resume", "the same call with resume=True")
RERUN = Wording("rerun the same command", "run the same call again")
# Below this, even the lock and an adapter may not fit (a probe write can pass on a full disk: reserved blocks).
MIN_FREE_BYTES = 2**20


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``str()`` says what was kept and how to continue (the CLI prints it, exit 130).

    A KeyboardInterrupt still, so code that stops on Ctrl-C keeps stopping.
    """


# ------------------------------------------------------------------------------------------------ stops


def stop_word(stop: BaseException) -> str:
    """How a stop's one line begins: 'interrupted' (Ctrl-C) or 'out of memory'."""
    return "interrupted" if isinstance(stop, KeyboardInterrupt) else "out of memory"


def stop_note(stop: BaseException, step: int, updating: bool, save: Callable[[], Path] | None,
              continue_with: str | Wording | None = RESUME, last: Path | None = None) -> str:
    """Keep what a stopped loop can keep and say so in one line.

    Before the optimizer update the parameters are those of the last completed step: worth a
    checkpoint. Inside it, AdamW may have moved some tensors and not others, so only older
    checkpoints stand (``last``, the newest one, if any). ``save`` is None where nothing can resume (no
    output folder, or a command without --resume): then nothing is written and the way on is to rerun.
    """
    why = stop_word(stop)
    if save is None or continue_with is None:
        return f"{why} at step {step}; nothing was kept; {RERUN} to start over"
    if not updating:
        try:
            return f"{why} at step {step}; checkpoint saved to {save()}; continue with {continue_with}"
        except KeyboardInterrupt:  # a forced stop (a third Ctrl-C) cut the save short: the older checkpoints stand
            if last is None:
                return (f"{why} at step {step}, and again while its checkpoint was written: nothing was kept; "
                        f"{RERUN} to start over")
            return (f"{why} at step {step}, and again while its checkpoint was written, so it was not kept; "
                    f"{continue_with} continues from the last periodic one, {last}")
        except (OSError, LowdimError) as refused:  # the disk refused it (full, read-only): said, not hidden by the stop
            if isinstance(refused, OSError) and refused.errno is None:
                raise  # no error number: not the OS's refusal but a bug's, which keeps its traceback
            return unwritten_note(why, step, refused, continue_with, last)
    if last is None:
        return (f"{why} inside the optimizer update of step {step + 1}, so no checkpoint of it was saved and "
                f"there is no earlier one; {RERUN} to start over")
    return (f"{why} inside the optimizer update of step {step + 1}, so no checkpoint of it was saved; "
            f"{continue_with} continues from the last periodic one, {last}")


def unwritten_note(why: str, step: int, refused: Exception, continue_with: str | Wording,
                   last: Path | None) -> str:
    """A stop's line when its checkpoint could not be written: the OS's reason naming the path, and what stands."""
    filename = getattr(refused, "filename", None)
    reason = (f"{os.fsdecode(filename)}: {os_reason(refused, filename)}" if filename is not None
              else str(refused))
    said = f"{why} at step {step}, but its checkpoint could not be written ({reason})"
    if last is None:
        return f"{said}, so nothing was kept; {RERUN} to start over"
    return f"{said}; {continue_with} continues from the last periodic one, {last}"


# Set while a caller runs a loop whose stop it says itself, in its own words (precompute: what its index and the
# batch in flight keep): the loop's out-of-memory line is then not warned too, as its Ctrl-C line is replaced.
_STOP_SAID_BY_CALLER: contextvars.ContextVar[bool] = contextvars.ContextVar("lowdim_stop_said_by_caller",
                                                                          default=False)


@contextlib.contextmanager
def stop_said_by_caller() -> Iterator[None]:
    """Within the block, ``reraise`` raises an out-of-memory stop without its line: the caller says one."""
    with scoped(_STOP_SAID_BY_CALLER, True):
        yield


def reraise(stop: BaseException, note: str) -> NoReturn:
    """Ctrl-C becomes ``Interrupted(note)``; any other stop is warned about (unless ``stop_said_by_caller``) and
    raised as it was."""
    if isinstance(stop, KeyboardInterrupt):
        raise Interrupted(note) from stop
    if not _STOP_SAID_BY_CALLER.get():
        warnings.warn(note, stacklevel=3)
    raise stop


# ------------------------------------------------------------------------------------------ the folder


OUT = Wording("--out", "out")  # the output option of every job, as its reader gave it


def naming(path: Path, flag: str | None) -> str:
    """How a line names an output path: with ``flag`` (``-o PATH``) where the caller knows it, else as its reader
    gave it: ``--out PATH`` on the command line, ``out=PATH`` from Python."""
    return f"{flag} {path}" if flag else either(f"{OUT.cli} {path}", f"{OUT.api}={path}")


def check_usable(out: Path, needed_bytes: int = 0, flag: str | None = None) -> None:
    """One line when ``out`` cannot hold the run's files: a file, not creatable, read-only, or full. The space
    first, as it needs no folder made: a run refused leaves no empty ``out`` behind. ``flag``: the option's name
    where the caller knows it (default: ``--out`` on the command line, ``out=`` from Python)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LowdimError(f"{naming(out, flag)}: a file, where a folder is needed")
    check_space(out, max(needed_bytes, MIN_FREE_BYTES), flag=flag)
    probe_writable(out, naming(out, flag))


def check_file_target(path: Path, flag: str | None = None) -> None:
    """One line when ``path`` cannot be written in its folder: a file stands where a folder is needed, or the
    folder cannot be made or is read-only.

    Checked before the work, so a merge or an export is not lost to a typo in the output path."""
    path = Path(path)
    refuse_a_file_in_the_way(path.parent, naming(path, flag), path)
    probe_writable(path.parent, naming(path, flag))


def check_folder_target(folder: Path, flag: str = "--out") -> None:
    """One line when the folder ``folder`` could not be made or written, checked without making it (so a
    command refused later for its input leaves nothing behind): a file in its place or above it, or a
    read-only folder above it."""
    folder = Path(folder)
    existing = refuse_a_file_in_the_way(folder, naming(folder, flag), folder)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise LowdimError(f"{naming(folder, flag)}: not writable ({existing} is read-only)")


def refuse_a_file_in_the_way(folder: Path, named: str, shown: Path) -> Path | None:
    """The nearest existing one of ``folder`` and its parents (None: none exists); one line starting with
    ``named`` when it is a file, naming it unless it is ``shown`` itself."""
    existing = next((p for p in (folder, *folder.parents) if p.exists() or p.is_symlink()), None)
    if existing is not None and not existing.exists():  # mkdir would fail on it with FileExistsError
        raise LowdimError(f"{named}: {'' if existing == shown else f'{existing} is '}a link to "
                          f"{os.readlink(existing)}, which does not exist")
    if existing is not None and not existing.is_dir():
        where = "" if existing == shown else f"{existing} is "
        raise LowdimError(f"{named}: {where}a file, where a folder is needed")
    return existing


def probe_writable(folder: Path, named: str) -> None:
    """Make ``folder`` if needed and write a byte in it; one line starting with ``named`` when either fails, and
    then the folders it made are removed."""
    made = [p for p in (folder, *folder.parents) if not (p.exists() or p.is_symlink())]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".lowdim-probe-{os.getpid()}.tmp"
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as error:
        for empty in made:  # innermost first
            with contextlib.suppress(OSError):
                empty.rmdir()
        raise LowdimError(f"{named}: not writable ({error.strerror or error})") from None


def check_space(out: Path, needed_bytes: int, needing: str = "the run", flag: str | None = None) -> None:
    """One line when the disk holding ``out`` (or the folder it will be made in) lacks ``needed_bytes``; ``flag``
    as check_usable has it."""
    if not needed_bytes:
        return
    existing = Path(out).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise LowdimError(f"{naming(out, flag)}: {free / 2**20:.1f} MB free, {needing} needs about "
                          f"{needed_bytes / 2**20:.1f} MB; free some space or choose another {flag or OUT}")


def refuse_overwrite(paths: list[Path], overwrite: bool, other: str | None = None) -> None:
    """Existing outputs are replaced only with ``--overwrite`` (``overwrite=True`` from Python): the policy of
    every command. ``other``: the other way out, as its reader would put it (default: another output folder)."""
    existing = [Path(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        other = other or either("choose another --out", "choose another out")
        raise LowdimError(f"{existing[0]}{more}: already exists; pass {either('--overwrite', 'overwrite=True')} "
                          f"to replace it, or {other}")


def clean_stray_temps(out: Path) -> list[Path]:
    """Remove what writes a killed run left half done (``lowdim.atomic``'s temp places, safetensors' own temp
    inside them, older temp files), where lowdim writes: ``out`` itself and its checkpoint folders (never deeper:
    ``--out .`` must not sweep a home folder); says what it removed."""
    from lowdim.atomic import describe_removed, sweep_temps

    out = Path(out)
    removed = {}
    for folder in [out, *sorted((out / "checkpoints").glob("step-*"))]:
        removed.update(sweep_temps(folder))
    if removed:
        warnings.warn(f"{out}: {describe_removed(removed)}", stacklevel=2)
    return list(removed)


def holds_the_shared_out() -> bool:
    """Whether this process is the one that holds, cleans and repairs a run's --out: under a launcher (`accelerate
    launch`, torchrun) every process runs the command on the same --out, and rank 0 does it for all; alone, it is."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def output_folder(out: Path, outputs: Sequence[Path] = (), overwrite: bool = False,
                  needed_bytes: int = 0) -> Iterator[Path]:
    """Hold ``out`` for one run: usable, not overwriting ``outputs`` unless asked, locked, cleaned."""
    out = Path(out)
    refuse_overwrite(list(outputs), overwrite)
    created = not out.exists()
    check_usable(out, needed_bytes)
    if not holds_the_shared_out():
        yield out
        return
    mine = acquire_lock(out)
    try:
        clean_stray_temps(out)
        yield out
    except BaseException:
        release_lock(out, mine)
        if created and not any(out.iterdir()):  # a run that failed before writing leaves no empty --out
            out.rmdir()
        raise
    release_lock(out, mine)


def one_run_per_folder(out_of: Callable[[Any], str | os.PathLike[str]],
                       outputs_of: Callable[[Any], Sequence[Path]] | None = None,
                       check: Callable[[Any], object] | None = None) -> Callable[[Run], Run]:
    """Decorate a ``run(job, ...)`` so it holds ``out_of(job)`` (see ``output_folder``) while it runs; the
    decorated function keeps its signature, for type checkers too.

    ``check(job)`` first refuses settings nothing can run with, before the folder is made;
    ``outputs_of(job)`` lists the files the run would replace, which ``job.overwrite`` allows.
    """
    def decorate(run: Run) -> Run:
        @functools.wraps(run)
        def held(job: Any, *args: Any, **kwargs: Any) -> Any:
            if check is not None:
                check(job)
            outputs = outputs_of(job) if outputs_of else []
            with output_folder(Path(out_of(job)), outputs, bool(getattr(job, "overwrite", False))):
                return run(job, *args, **kwargs)
        return cast(Run, held)  # functools.wraps keeps the signature at run time; mypy cannot see that it does
    return decorate


# ------------------------------------------------------------------------------------------ precision


def autocast(device: torch.device, mixed_precision: str) -> contextlib.AbstractContextManager[None]:
    """Autocast for the single-process engine; accelerate's would fix one setting per process."""
    if mixed_precision == "no":
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[mixed_precision]
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, mixed_precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 autocast on a GPU, where small gradients would underflow to zero; a
    disabled scaler (every call a pass-through) everywhere else. bf16 has fp32's range: no scaling."""
    return torch.amp.GradScaler(device.type, enabled=mixed_precision == "fp16" and device.type == "cuda")


# ------------------------------------------------------------------------------------------- progress


def progress(total: int, label: str = "training", start: int = 0, enabled: bool = True, loss: bool = True,
             transient: bool = False, console: Any = None) -> contextlib.AbstractContextManager[Advance]:
    """The one progress bar of lowdim: steps done of ``total``, elapsed and remaining time, moved by
    ``advance(value=None, steps=1, label=None)`` (``progress_bars.progress`` says what it shows and when it draws).
    It draws on ``console``, else on ``bar_console()``, looked up here at each bar, so a test or a caller that
    replaces ``runs.bar_console`` reaches every bar too."""
    return progress_bars.progress(total, label, start, enabled, loss, transient, console, default_console=bar_console)


@functools.cache
def bar_console() -> Any:
    """The console lowdim's bars draw on: stderr, as tqdm's do, so `python script.py > out.json` or
    `lowdim ... | jq` gets data only. One for the process: rich draws one live display at a time."""
    from rich.console import Console

    return Console(stderr=True)
