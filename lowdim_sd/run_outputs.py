"""What an earlier run left in an output folder that a new run would leave beside its own output, stale: the
adapter, its ``lowdim export`` files, or a ``train --full`` run's ``model/``.

A script reading ``OUT/adapter.safetensors`` (or ``lowdim show OUT``) must never pick up another run's file, so a
run refuses such a folder in one line, and ``--overwrite`` removes those files. Only what lowdim wrote counts,
each told by its header or record, never by its name alone: a user's own file at one of these names stays.

Other lowdim adapters in OUT (told by header: a ``train --subjects`` run's ``NAME.safetensors``, or adapters a
user keeps there, which lowdim cannot tell apart) are never removed: a run leaves them as they are and names them
in one warning as it starts (``warn_adapters_left``; not again as it resumes), so none is taken for this run's. The
adapter ``--init`` starts from is the run's input, and is not named. personalize's preview.png goes with the
adapter it shows, where that adapter is replaced or removed.

A ``lowdim train`` job's outputs (``TrainJob``) are named here too: the paths it writes (``written_paths``), those it
would replace (``output_names``), and the earlier run's files it refuses or removes.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim.errors import LowdimError
from lowdim.option_words import either, option
from lowdim_sd import checkpoints
from lowdim_sd.train_job_words import job_option

if TYPE_CHECKING:
    from lowdim_sd.workflows import TrainJob

ADAPTER = "adapter.safetensors"  # what an adapter run (train, personalize) writes into its --out
MODEL = "model"  # what a train --full run writes into its --out
PREVIEW = "preview.png"  # what personalize writes beside its adapter


@dataclass(frozen=True)
class Earlier:
    """One output of an earlier run: its path, and what it is, as a line names it."""

    path: Path
    what: str


def export_path(adapter: Path, fmt: str) -> Path:
    """Where ``lowdim export`` (and ``personalize --export``) put ``adapter``'s export in ``fmt`` by default:
    NAME.FORMAT.safetensors beside it."""
    return adapter.with_name(f"{adapter.stem}.{fmt}.safetensors")


def export_formats() -> tuple[str, ...]:
    """Every format ``lowdim export`` writes: a LoRA's, and an embedding's (Textual Inversion)."""
    from lowdim_sd.export import FORMATS
    from lowdim_sd.textual_inversion import EXPORT_FORMATS

    return tuple(dict.fromkeys((*FORMATS, *EXPORT_FORMATS)))


def earlier_outputs(out: Path, writes_model: bool, adapters: Sequence[Path] = ()) -> list[Earlier]:
    """What an earlier run left in ``out`` that this run (writing ``model/`` or the ``adapters``) does not write
    again: for a model, an adapter run's adapter, its exports and personalize's preview of it; for adapters, a
    --full run's model, and the exports and preview of the adapters they replace (an export or a preview shows the
    adapter it was made from, not the new one)."""
    if writes_model:
        adapter = out / ADAPTER
        if _lowdim_adapter(adapter):
            return _with_what_was_made_of_it(adapter)
        return _exports(adapter, "an earlier adapter's export")
    replaced = [made for adapter in adapters for made in _made_of(adapter, "an earlier adapter's")]
    return full_run_model(out) + replaced


def full_run_model(out: Path) -> list[Earlier]:
    """An earlier --full run's ``model/`` in ``out``, which an adapter run (train's, personalize's) would leave
    beside its adapter."""
    model = out / MODEL
    return [Earlier(model, f"the model of an earlier {either('--full', 'TrainJob(full=True)')} run")] \
        if trained_model(model) else []


def _with_what_was_made_of_it(adapter: Path) -> list[Earlier]:
    """An earlier run's adapter, then its exports and personalize's preview of it, which go with it."""
    return [Earlier(adapter, _adapter_words(adapter)), *_made_of(adapter, "its")]


def _made_of(adapter: Path, whose: str) -> list[Earlier]:
    """``adapter``'s exports, and the preview.png beside it where personalize wrote both (its recipe says so)."""
    preview = adapter.with_name(PREVIEW)
    ours = adapter.name == ADAPTER and preview.is_file() and _made_by_personalize(adapter)
    return _exports(adapter, f"{whose} export") + ([Earlier(preview, f"{whose} preview")] if ours else [])


def refuse_earlier(earlier: Sequence[Earlier], own: str) -> None:
    """One line naming the earlier run's outputs, which would pass for this run's ``own`` output (in words)."""
    if not earlier:
        return
    listed = ", ".join(f"{item.path} ({item.what})" for item in earlier)
    it = "it" if len(earlier) == 1 else "them"
    raise LowdimError(f"{listed}: this run would leave {it} beside its {own}, to be taken for this run's; pass "
                      f"{either('--overwrite', 'overwrite=True')} to remove {it}, or "
                      f"{either('choose another --out', 'choose another out')}")


def remove_earlier(earlier: Sequence[Earlier]) -> list[Path]:
    """Remove the earlier run's outputs (``--overwrite`` replaces the whole run) and say which, in one warning."""
    for item in earlier:
        if item.path.is_dir():
            shutil.rmtree(item.path)
        else:
            item.path.unlink(missing_ok=True)
    if earlier:
        listed = ", ".join(f"{item.path} ({item.what})" for item in earlier)
        warnings.warn(f"removed the earlier run's {listed}: {either('--overwrite', 'overwrite=True')} replaces the "
                      f"whole run", stacklevel=3)
    return [item.path for item in earlier]


def lowdim_adapters(out: Path) -> list[Path]:
    """The lowdim adapters in ``out``, told by their header: a user's other .safetensors file is none."""
    if not out.is_dir():
        return []
    return sorted(path for path in out.glob("*.safetensors") if _lowdim_adapter(path))


def adapters_left(out: Path, writes: Sequence[Path] = (), start: Path | None = None) -> list[Path]:
    """The lowdim adapters in ``out`` a run leaves as they are, told by header: each but those the run ``writes``
    (a --full run, writing none: ``adapter.safetensors``, refused or removed as ``earlier_outputs`` says) and the
    one it ``start``s from."""
    own = {path.name for path in writes} or {ADAPTER}  # a --full run writes none: its adapter is refused or removed
    kept = start.resolve() if start is not None else None
    return [path for path in lowdim_adapters(out) if path.name not in own and path.resolve() != kept]


def warn_adapters_left(out: Path, writes: Sequence[Path] = (), start: Path | None = None,
                       own: str = "model") -> list[Path]:
    """Name, in one warning, the lowdim adapters of an earlier run (a ``--subjects`` run's NAME.safetensors) or of
    the user's that a run leaves beside its ``own`` output, so none is taken for this run's; returns them."""
    left = adapters_left(out, writes, start)
    if left:
        listed = ", ".join(map(str, left))
        these = "lowdim adapters this run does not write, left as they were" if len(left) > 1 \
            else "a lowdim adapter this run does not write, left as it was"
        warnings.warn(f"{listed}: {these} beside this run's {own}", stacklevel=2)
    return left


def _adapter_words(adapter: Path) -> str:
    from lowdim_sd.file_info_parts import part

    space = _metadata(adapter).get("space")  # the header's text: escaped and cut, as show prints it
    return f"an earlier run's adapter, space {part(space)}" if space else "an earlier run's adapter"


def _made_by_personalize(adapter: Path) -> bool:
    from lowdim_sd.file_info_parts import json_object

    return json_object(_metadata(adapter).get("extra")).get("made_by") == "lowdim personalize"


def _exports(adapter: Path, what: str) -> list[Earlier]:
    """The files at ``adapter``'s export names whose header says ``lowdim export`` wrote them."""
    return [Earlier(path, what) for path in (export_path(adapter, fmt) for fmt in export_formats())
            if path.is_file() and _exported(path)]


def _exported(path: Path) -> bool:
    from lowdim_sd.file_info import exported_by_lowdim
    from lowdim_sd.file_info_parts import read_header

    try:
        return exported_by_lowdim(read_header(path))
    except (LowdimError, OSError):  # not a readable .safetensors file: not lowdim's
        return False


def _lowdim_adapter(path: Path) -> bool:
    from lowdim.files import FORMAT

    return path.is_file() and _metadata(path).get("format") == FORMAT


def _metadata(path: Path) -> dict[str, str]:
    from lowdim_sd.file_info_parts import read_header

    try:
        return read_header(path).metadata
    except (LowdimError, OSError):
        return {}


def trained_model(folder: Path) -> bool:
    """Whether ``folder`` is a model a ``train --full`` run wrote: its ``lowdim_merge.json`` says so."""
    from lowdim_sd.merged_model import read_merge_record
    from lowdim_sd.model_info import TRAINED

    try:
        record = read_merge_record(folder) if folder.is_dir() else None
    except OSError:  # an unreadable record: not one lowdim can vouch for
        return False
    return record is not None and record.get("made_by") == TRAINED


def output_names(job: TrainJob) -> list[Path]:
    """The files (or folder) the run would replace in ``job.out``; a resumed run replaces its own."""
    if continues(job):
        return []
    if job.resume and job.full and not job.overwrite:
        refuse_resuming_a_finished_full_run(job.out / "model")
    return written_paths(job)


def continues(job: TrainJob) -> bool:
    """Whether the run continues an earlier one from its checkpoint: its outputs are the run's own."""
    return job.resume and checkpoints.latest(job.out) is not None


def earlier_outputs_of(job: TrainJob) -> list[Earlier]:
    """What an earlier run of another kind left in ``job.out`` that this run would leave beside its own output,
    stale: a --full run's model/ where adapters are written, an adapter where a model is, and the exports of
    either adapter (``earlier_outputs``)."""
    if continues(job):
        return []
    return _earlier_of(job)


def replaced_outputs(job: TrainJob) -> list[Earlier]:
    """What of an earlier run of another kind this run removes when done: with --overwrite, and on a resume, whose
    first start needed --overwrite to go ahead beside them."""
    if not (job.overwrite or continues(job)):
        return []
    return _earlier_of(job)


def _earlier_of(job: TrainJob) -> list[Earlier]:
    return earlier_outputs(job.out, job.full, [] if job.full else written_paths(job))


def warn_train_adapters_left(job: TrainJob) -> list[Path]:
    """``warn_adapters_left`` for a train run as it starts (not as it resumes: its first start said it): the
    adapters beside its model, or beside its own adapters but for the one ``--init`` starts from."""
    if continues(job):
        return []
    if job.full:
        return warn_adapters_left(job.out)
    initial = Path(job.initial) if job.initial is not None else None
    own = "adapter" if len(written_paths(job)) == 1 else "adapters"
    return warn_adapters_left(job.out, written_paths(job), initial, own)


def refuse_earlier_outputs(job: TrainJob) -> None:
    """Without --overwrite, one line naming an earlier run's outputs this run would leave stale; where the run's
    own output is there too, ``runs.refuse_overwrite`` names that one instead."""
    if job.overwrite or any(path.exists() for path in output_names(job)):
        return
    refuse_earlier(earlier_outputs_of(job), "model" if job.full else "adapter")


def refuse_resuming_a_finished_full_run(model: Path) -> None:
    """A --full run's model folder with no checkpoint beside it: the run finished and, without --checkpoint-every,
    kept none (its UNet and AdamW's moments, ~10 GB at SD1.5), so a resume has nothing to continue. Said so,
    rather than the generic "already exists"; a folder no --full run recorded itself in gets the generic line."""
    from lowdim_sd.merged_model import read_merge_record

    record = read_merge_record(model) if model.is_dir() else None
    steps = record.get("steps") if record and record.get("made_by") == "lowdim train --full" else None
    if isinstance(steps, int) and not isinstance(steps, bool):
        full, every = either("--full", "TrainJob(full=True)"), option("checkpoint_every", "TrainConfig")
        raise LowdimError(f"{model}: the run finished at step {steps} and kept no checkpoint (a {full} run keeps one "
                          f"only with {every}), so it cannot continue; pass {either('--overwrite', 'overwrite=True')} "
                          f"to start it anew, or choose another {job_option('out')}")


def check_output_paths(job: TrainJob) -> None:
    """An output path taken by the wrong kind of thing (a folder named adapter.safetensors, a file named model),
    refused before the model loads: the final save would find it only after every step had run."""
    for path in written_paths(job):
        if job.full and path.exists() and not path.is_dir():
            raise LowdimError(f"{path}: is a file, where {either('--full', 'TrainJob(full=True)')} writes the "
                              f"trained model's folder; move it away or choose another {job_option('out')}")
        if not job.full and path.is_dir():
            raise LowdimError(f"{path}: is a folder, where the run writes an adapter file; move it away or choose "
                              f"another {job_option('out')}")


def written_paths(job: TrainJob) -> list[Path]:
    """The files (or folder) the run writes into ``job.out``."""
    if job.full:
        return [job.out / "model"]
    if job.subjects is not None and job.subjects.is_dir():
        from lowdim_sd.workflows import subject_folders  # here, not at the top: workflows imports this module

        return [job.out / f"{p.name}.safetensors" for p in subject_folders(job.subjects, warn=False)]
    return [job.out / "adapter.safetensors"]
