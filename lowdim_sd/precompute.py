"""Phase 0 of HyperDreamBooth: one optimised adapter per identity, stored as a sharded weight dataset.

The hypernetwork (phase 1, ``lowdim_sd.hypertrain``) learns from (image, θ) pairs, where θ are the
"pre-optimized weight parameters of the personalized model" of eq. 2. This module produces them:
identities are trained K at a time with the batched multi-subject engine (K per-sample adapters in
one batch, each identical to training it alone), and each batch of K becomes one shard.

Layout of the output folder::

    out/index.json                    what every row is (see ``read_index``)
    out/shard-00000.safetensors       key "layer/param" -> (rows, *shape): the trainable params
    out/shard-p1-00000.safetensors    shards of process 1 when run under ``accelerate launch``
    out/index-p1.json                 process 1's part of the index until the main process merges it

Resuming skips identities already in the index, unless their pictures changed (``precompute_resume``). A
shard is written atomically before the index names it, and the batch in flight trains in a hidden folder of ``out``
that a stop leaves a checkpoint in, which a rerun resumes (``precompute_batches``): an interrupted run loses no step.
"""

from __future__ import annotations

import json
import numbers
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import lowdim
from lowdim import option_words
from lowdim.errors import LowdimError
from lowdim.files import atomic_save
from lowdim_sd import defaults, runs
from lowdim_sd import precompute_batches as batches
from lowdim_sd.checked_pictures import read_as_digested
from lowdim_sd.face_inputs import load_face_image, resolve_crop
from lowdim_sd.images import IMAGE_EXTENSIONS, collect_images, upscaling_told_once
from lowdim_sd.job_fields import OptionalPathField, PathField, job_dataclass, path_field
from lowdim_sd.precompute_batches import InFlight
from lowdim_sd.precompute_header import index_header, refuse_other_settings_early
from lowdim_sd.precompute_resume import identity_seed, index_entry, stop_note, take_over
from lowdim_sd.precompute_start import read_start, start_from
from lowdim_sd.process_failures import AnotherProcessFailed, another_failure, failing_together, join_the_others
from lowdim_sd.train import Subject, TrainConfig, train
from lowdim_sd.train_settings import check_job_rate, check_types, job_rate
from lowdim_sd.weight_index import (  # noqa: F401  (read_index, merge_index: this module's API too)
    FORMAT,
    FORMAT_VERSION,
    INDEX,
    differing_settings,
    done_identities,
    identity_named,
    merge_index,
    read_index,
    write_json,
)

if TYPE_CHECKING:
    from accelerate import PartialState

    from lowdim.injection import LayerSet
    from lowdim.spaces.base import Space
    from lowdim_sd.loading import SDModel

@dataclass
class Identity:
    name: str
    images: list[Path]


@job_dataclass
class PrecomputeJob:
    """Everything ``lowdim precompute`` needs: the training options in ``config``, as in ``TrainJob``,
    and one field per other CLI option. ``config.seed`` is also the adapter seed (LiDB's bases).
    """

    model: str
    identities: PathField = path_field()  # a str is as good, as for every path field (lowdim_sd.job_fields)
    out: PathField = path_field(default=Path("weights"))
    space: str = "lidb"
    space_options: dict = field(default_factory=dict)
    layers: str | None = None
    # The rate, as config.learning_rate may also give it (two different ones are refused); neither: the
    # space's usual rate (lidb 2e-3), which a TrainConfig default cannot express since it depends on the space.
    learning_rate: float | None = None
    batch_subjects: int = 8
    device: str = "auto"
    dtype: str = "auto"
    model_config: str | None = None
    resolution: int | None = None  # image side the adapters train at (None: the model's); recorded in the index
    limit: int | None = None  # only the first N identities (sorted by name)
    crop: bool | None = None  # crop every image to the face; None: the backend's default (see face_inputs)
    crop_margin: float = 0.6
    face_index: int | None = None  # which face when there are several (0: the largest)
    # Every identity draws the same augmentations, noise and timesteps (seed config.seed), so two
    # identities' θ differ by their faces only, not by their optimisation's random draws.
    shared_noise: bool = False
    # A lowdim adapter file (same space and layers) every identity starts from instead of the space's
    # init, e.g. the mean θ of an earlier precompute: targets then differ by a short, shared path's end.
    init: OptionalPathField = path_field(default=None)
    config: TrainConfig = field(default_factory=TrainConfig)


# PrecomputeJob's settings a Python caller may give of another type (the CLI's parsing gives these).
JOB_TYPES = {"learning_rate": numbers.Real, "batch_subjects": numbers.Integral, "resolution": numbers.Integral,
             "limit": numbers.Integral, "crop": bool, "crop_margin": numbers.Real, "face_index": numbers.Integral,
             "shared_noise": bool}


@dataclass
class PrecomputeResult:
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    shards: list[Path] = field(default_factory=list)
    index: Path | None = None
    processes: int = 1
    main_process: bool = True
    run_trained: int = 0  # over all processes of the run (this one's alone: len(trained))
    run_skipped: int = 0


# ------------------------------------------------------------------------------------------ identities


def discover_identities(folder: Path, out: Path | None = None) -> list[Identity]:
    """One identity per sub-folder (all its images), or, in a folder without sub-folders, one per image. A
    sub-folder that holds ``out`` (precompute's --out, made before this runs) and no image is not an identity:
    ``cd photos && lowdim precompute -i .`` writes its default ``weights`` there."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "a file, not a folder" if folder.exists() else "no such folder"
        raise LowdimError(f"{folder}: {what} of identities (one sub-folder, or one image, per identity)")
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                        and not _holds_out(p, out))
    if subfolders:
        loose = [p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if loose:
            loose_said, are = option_words.counted(len(loose), "image"), "is" if len(loose) == 1 else "are"
            warnings.warn(f"{folder}: {loose_said} beside the identity sub-folders {are} ignored, e.g. {loose[0]}",
                          stacklevel=2)
        return [Identity(identity_named(sub), collect_images(sub)) for sub in subfolders]
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        raise LowdimError(f"{folder}: no identities: expected one sub-folder of images per identity, "
                          f"or image files (one identity each)")
    identities: dict[str, Identity] = {}
    for path in images:
        if path.stem in identities:
            raise LowdimError(f"{folder}: two images are named {path.stem} ({identities[path.stem].images[0].name}, "
                              f"{path.name}); rename one, each flat image is an identity named by its stem")
        identities[identity_named(path, path.stem)] = Identity(path.stem, [path])
    return list(identities.values())


def _holds_out(folder: Path, out: Path | None) -> bool:
    if out is None or not Path(out).resolve().is_relative_to(folder.resolve()):
        return False
    return not any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


# ----------------------------------------------------------------------------------------------- index


def _shard_name(folder: Path, rank: int, processes: int) -> str:
    prefix = "shard-" if processes == 1 else f"shard-p{rank}-"
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.safetensors$")
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return f"{prefix}{max(numbers, default=-1) + 1:05d}.safetensors"


# ----------------------------------------------------------------------------------------------- run


def check_job(job: PrecomputeJob) -> None:
    """Counts no precompute can run with, refused before anything loads or is written."""
    check_types(job, JOB_TYPES, "PrecomputeJob", optional=("learning_rate", "limit", "crop", "face_index",
                                                           "resolution"), flags={"learning_rate": "--lr"})
    job.config._check_types("TrainConfig")  # its types, before the counts below compare them
    for name, owner, value in (("batch_subjects", "PrecomputeJob", job.batch_subjects),
                               ("steps", "TrainConfig", job.config.steps),
                               ("limit", "PrecomputeJob", 1 if job.limit is None else job.limit)):
        if value < 1:
            raise LowdimError(f"{option_words.option(name, owner)} must be at least 1, got {value}")
    check_job_rate(job.learning_rate, "PrecomputeJob")
    training_config(job).validate()  # --lr 0 or a NaN rate: refused, never replaced by the default
    space = lowdim.get_space(job.space, job.space_options)
    probe = lowdim.LayerSpec("probe", 64, 64)  # which params train does not depend on the layer's size
    if set(space.param_shapes(probe)) - set(space.trainable_names(probe)):
        raise LowdimError(f"--space {job.space} has frozen params, which no hypernetwork predicts: train-hypernet "
                          f"would refuse these weights; precompute a space whose params all train (lidb, lora)")
    from lowdim_sd.personalize_checks import check_crop_flags
    from lowdim_sd.precompute_header import check_new_margin

    check_new_margin(job)
    if job.face_index is not None and job.face_index < 0:
        raise LowdimError(f"{option_words.option('face_index', 'PrecomputeJob')} must be 0 or more (0 is the largest "
                          f"face), got {job.face_index}")
    check_crop_flags(job)  # a crop setting where nothing is cropped: as personalize refuses it
    from lowdim_sd.generate import check_resolution

    check_resolution(job.resolution)
    from lowdim_sd.devices import check_training_dtype

    check_training_dtype(job.device, job.dtype)


@runs.one_run_per_folder(lambda job: job.out, check=check_job)
def precompute(job: PrecomputeJob, progress: bool = True, model: SDModel | None = None) -> PrecomputeResult:
    """Train one adapter per identity not yet in ``job.out`` and store them as shards."""
    with failing_together():  # under a launcher: a process that fails stops the others with its line
        plan = _plan(job, progress, model)
        result = PrecomputeResult(index=plan.out / INDEX, skipped=plan.skipped)
        _train_pending(job, plan, result, progress)
        _finish(plan, result)
    return result


@dataclass
class _Plan:
    """What a run settles before its first batch: the model and adapters to train, this process's share of the
    identities still to train, and its part of the index as it stands on disk (``own``)."""

    config: TrainConfig
    model: SDModel
    space: Space
    layer_set: LayerSet
    crop: bool
    initial: dict | None  # --init's tensors, every identity's start
    header: dict
    out: Path
    state: PartialState
    index_path: Path
    pending: list[tuple[int, Identity]]
    skipped: list[str]
    replaced: dict[str, dict]  # identities trained again because their pictures changed: name -> old entry
    own: dict

    @property
    def rank(self) -> int:
        return self.state.process_index

    @property
    def processes(self) -> int:
        return self.state.num_processes


def _plan(job: PrecomputeJob, progress: bool, model: SDModel | None) -> _Plan:
    from accelerate import PartialState

    from lowdim_sd.devices import accelerator_available
    from lowdim_sd.loading import load_sd
    from lowdim_sd.modes import resolve_layers

    config = training_config(job)
    every = discover_identities(job.identities, job.out)
    crop = resolve_crop(job.crop, job.model)  # before the model loads: a missing extra fails fast
    refuse_other_settings_early(job, config, crop)
    join_the_others()  # forming the process group would wait forever for a process that failed before it
    state = PartialState(cpu=job.device == "cpu" or (job.device == "auto" and not accelerator_available()))
    rank, processes = state.process_index, state.num_processes
    device = str(state.device) if job.device == "auto" and processes > 1 else job.device
    model = model or load_sd(job.model, device, job.dtype, job.model_config)
    space = lowdim.get_space(job.space, job.space_options)
    layer_set = resolve_layers(job.layers, job.model)
    initial = read_start(job.init, model, space, layer_set, config.seed) if job.init is not None else None
    header = index_header(job, config, model, space, layer_set, crop, initial)
    out = job.out
    out.mkdir(parents=True, exist_ok=True)
    batches.sweep_other_runs(out, rank, processes)  # a stopped batch of a run under another number of processes
    mine = [(number, identity) for number, identity in enumerate(every[: job.limit]) if number % processes == rank]
    index_path = out / (INDEX if processes == 1 else f"index-p{rank}.json")
    done, replaced, own = take_over(out, header, [identity for _, identity in mine], index_path, rank, processes,
                                    lambda line: _say(progress, line), {identity.name for identity in every})
    return _Plan(config, model, space, layer_set, crop, initial, header, out, state, index_path,
                 pending=[(number, identity) for number, identity in mine if identity.name not in done],
                 skipped=[identity.name for _, identity in mine if identity.name in done], replaced=replaced, own=own)


def _train_pending(job: PrecomputeJob, plan: _Plan, result: PrecomputeResult, progress: bool) -> None:
    """Train the pending identities batch by batch, each batch kept (shard, then index) before the next; the batch in
    flight trains in ``where.folder``, which a stop leaves its checkpoint in (``precompute_batches``)."""
    started = time.monotonic()
    whose = f"process {plan.rank + 1} of {plan.processes}, " if plan.processes > 1 else ""  # lines interleave
    where = InFlight(batches.batch_folder(plan.out, plan.rank, plan.processes), plan.header, set(plan.skipped),
                     lambda line: _say(progress, whose + line), rank=plan.rank, processes=plan.processes)
    with upscaling_told_once(job.resolution or plan.model.resolution):  # one line for all small photos, even if stopped
        try:
            for start in range(0, len(plan.pending), job.batch_subjects):
                batch = plan.pending[start: start + job.batch_subjects]
                _say(progress, whose + batches.batch_line(start, len(batch), job.batch_subjects, len(plan.pending),
                                                   len(result.skipped), time.monotonic() - started))
                rows, digests = _train_batch(plan.model, job, plan.config, plan.space, plan.layer_set, batch,
                                             plan.crop, plan.initial, progress, where)
                _keep_batch(job, plan, result, batch, rows, digests)
                batches.remove(where.folder)  # kept: nothing of it to resume
            batches.leave_no_batch(where.folder, {*plan.skipped, *result.trained}, plan.processes)
        except (KeyboardInterrupt, torch.OutOfMemoryError) as stop:
            kept = where.kept({*plan.skipped, *result.trained})
            if kept is None:  # no step of it to resume
                batches.remove(where.folder)
            runs.reraise(stop, stop_note(stop, len(result.trained), len(plan.own["identities"]), plan.index_path,
                                         plan.rank, plan.processes, kept))


def _keep_batch(job: PrecomputeJob, plan: _Plan, result: PrecomputeResult, batch: list[tuple[int, Identity]],
                rows: dict[str, torch.Tensor], digests: list[list[str]]) -> None:
    names = [identity.name for _, identity in batch]
    shard = plan.out / _shard_name(plan.out, plan.rank, plan.processes)
    atomic_save(rows, {"format": FORMAT + ".shard", "identities": json.dumps(names)}, shard)
    entries = [index_entry(identity, digests[row], shard.name, row, _draws_seed(job, plan.config, identity.name),
                           Path(plan.header["root"]), plan.replaced.get(identity.name))
               for row, (_, identity) in enumerate(batch)]
    # After its shard: the index never names a shard that is not whole. Into a copy, so a stop during the
    # write leaves ``own`` what is on disk (the kept count) and the shard an orphan a resume removes.
    written = {**plan.own, "identities": plan.own["identities"] + entries}
    write_json(plan.index_path, written)
    plan.own = written
    result.trained += names
    result.shards.append(shard)


def _finish(plan: _Plan, result: PrecomputeResult) -> None:
    """Wait for the run's other processes, count the run's totals, and merge the processes' indexes."""
    if not plan.index_path.is_file():
        write_json(plan.index_path, plan.own)  # nothing new to train here: still leave a readable index
    try:
        plan.state.wait_for_everyone()
    except RuntimeError as error:  # another process stopped (its own error said why): the gloo/NCCL wait then fails
        failure = another_failure(error)  # its line, under a launcher that keeps one
        what = failure or "another process of this run stopped before the end"
        trained = option_words.counted(len(result.trained), "identity", plural="identities")
        raise AnotherProcessFailed(f"{what}; this one trained {trained}, kept "
                                   f"in {plan.index_path}; {runs.RERUN} to continue: done identities are skipped"
                                   ) from None
    result.processes, result.main_process = plan.processes, plan.state.is_main_process
    result.run_trained, result.run_skipped = _run_totals(len(result.trained), len(result.skipped), plan.state.device)
    if plan.state.is_main_process and any(plan.out.glob("index-p*.json")):
        merge_index(plan.out)


def _run_totals(trained: int, skipped: int, device: torch.device) -> tuple[int, int]:
    """The counts summed over the run's processes (each knows only its own share of the identities)."""
    from accelerate.utils import reduce

    totals = reduce(torch.tensor([trained, skipped], device=device), reduction="sum")
    return int(totals[0]), int(totals[1])


def _say(progress: bool, line: str) -> None:
    if progress:
        from rich import get_console

        get_console().print(line, highlight=False, soft_wrap=True, markup=False)  # one line, its paths as written


_batch_line = batches.batch_line  # tests call it pre._batch_line


def _draws_seed(job: PrecomputeJob, config: TrainConfig, name: str) -> int:
    return identity_seed(config.seed, name, job.shared_noise)


def _train_batch(model: SDModel, job: PrecomputeJob, config: TrainConfig, space: Space, layer_set: LayerSet,
                 batch: list[tuple[int, Identity]], crop: bool, initial, progress: bool, where: InFlight
                 ) -> tuple[dict[str, torch.Tensor], list[list[str]]]:
    """Train one adapter per identity of ``batch`` in one multi-subject run, in ``where.folder`` (resumed when it holds
    this batch stopped); their tensors, one row each, and each identity's digests of the bytes it was trained on
    (taken as read: a photo saved over while the batch trains is another picture, which a resume trains again)."""
    from lowdim_sd.modes import adapter_trainable

    size = job.resolution or model.resolution
    read = [[read_as_digested(path, lambda path: load_face_image(path, size, crop, job.crop_margin, job.face_index))
             for path in identity.images] for _, identity in batch]
    subjects = [Subject(torch.stack([image for image, _ in pictures]), _draws_seed(job, config, identity.name))
                for pictures, (_, identity) in zip(read, batch, strict=True)]
    trainable = adapter_trainable(model, space, layer_set, seed=config.seed,
                                  subject_names=[identity.name for _, identity in batch], token=config.token)
    if initial is not None:
        start_from(model, initial, len(batch))
    try:
        resume = where.resumes(model, subjects, trainable, config)
        with runs.stop_said_by_caller():  # a stop's one line is _train_pending's, of the index and this folder
            train(model, subjects, batches.BatchTrainable(trainable), config, out_dir=where.folder, resume=resume,
                  progress=progress, continue_with=runs.RERUN)
        rows = {key: value if len(batch) > 1 else value[None] for key, value in trainable.state().items()}
        return rows, [[digest for _, digest in pictures] for pictures in read]
    finally:
        lowdim.Adapters(model.modules).delete(trainable.name)


def training_config(job: PrecomputeJob) -> TrainConfig:
    """``job.config`` with the learning rate resolved: ``job.learning_rate`` or the config's, else the space's."""
    return job_rate(job.config, job.learning_rate, "PrecomputeJob", defaults.learning_rate(job.space))
