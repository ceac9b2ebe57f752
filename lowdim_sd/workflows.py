"""The SD backend's jobs as plain functions: what CLI commands call and tests call directly."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import shutil
import warnings
from collections.abc import Collection
from dataclasses import field
from pathlib import Path

import lowdim
from lowdim.errors import LowdimError
from lowdim.files import DTYPES as SAVE_DTYPES
from lowdim.injection.adding import adjusted_notes
from lowdim.option_words import counted, either, option
from lowdim_sd import checkpoints, defaults, run_outputs, runs, stopping
from lowdim_sd.devices import DTYPE_MEANT, check_training_dtype, did_you_mean, resolve_device
from lowdim_sd.generate import check_resolution
from lowdim_sd.given_model import check_given_model
from lowdim_sd.images import IMAGE_EXTENSIONS, collect_images, load_reference_sets, load_references
from lowdim_sd.job_fields import OptionalPathField, PathField, PathsField, job_dataclass, path_field, paths_field
from lowdim_sd.loading import SDModel, load_sd
from lowdim_sd.model_tree import refuse_out_in_model
from lowdim_sd.modes import (
    FullTrainable,
    adapter_trainable,
    initial_token,
    left_as_given,
    rank_relaxed_trainable,
    record_recipe,
    resolve_layers,
)
from lowdim_sd.personalize_checks import check_token
from lowdim_sd.step_graphs import check_graphs
from lowdim_sd.textual_inversion import learns_tokens, prompt_token, ti_trainable, token_options
from lowdim_sd.train import Subject, TrainConfig, TrainResult, train
from lowdim_sd.train_job_words import job_option, leave_out, space_named, unread_settings
from lowdim_sd.train_settings import check_job_rate, config_token, job_rate, refuse_inference_mode

# What help() shows: the job, what run_train returns (TrainResult, its Subjects) and TrainJob's config type.
__all__ = ["Subject", "TrainConfig", "TrainJob", "TrainResult", "run_train"]


@job_dataclass
class TrainJob:
    """Everything ``lowdim train`` needs; one field per CLI option."""

    model: str
    # Files or folders of pictures, or one alone, held as a list of Paths; every path field takes a str or a Path
    # and holds a Path (lowdim_sd.job_fields)
    images: PathsField = paths_field(default=())
    # A folder of per-subject folders: K adapters trained in one batch
    subjects: OptionalPathField = path_field(default=None)
    space: str = "lidb"
    space_options: dict = field(default_factory=dict)
    layers: str | None = None
    full: bool = False
    train_text_encoder: bool = False
    initial: OptionalPathField = path_field(default=None)  # rank-relaxed finetuning from it
    rank: int = 4
    merge_frozen: bool = True
    out: PathField = path_field(default=Path("out"))
    resume: bool = False
    overwrite: bool = False  # replace the adapters of an earlier run, or start over on its checkpoints
    device: str = "auto"
    dtype: str = "auto"
    model_config: str | None = None
    resolution: int | None = None  # image side for training (None: the model's)
    save_dtype: str = "fp16"  # tensors of the adapter files (full DreamBooth saves the model as it is: refused)
    learning_rate: float | None = None
    dropout: float = 0.0  # of the adapter's input while it trains (peft's lora_dropout); 0: none
    config: TrainConfig = field(default_factory=TrainConfig)  # its learning_rate, if set, is --lr's too


def mode_of(job: TrainJob) -> str:
    if job.full:
        return "full"
    if job.initial is not None:
        return "relaxed"
    return job.space


def subject_sets(job: TrainJob, resolution: int) -> tuple[list[str], list[Subject]]:
    """(names, subjects): one subject from --images, or one per sub-folder of --subjects."""
    if job.subjects is not None:
        folders = subject_folders(job.subjects)
        names = [folder.name for folder in folders]
        images = load_reference_sets(folders, resolution)  # every subject's unusable files in one error
    else:
        if not job.images:
            raise LowdimError("no reference images: pass " + either("--images FILE_OR_FOLDER (or --subjects FOLDER)",
                                                                    "TrainJob(images=[FILE_OR_FOLDER]) (or "
                                                                    "TrainJob(subjects=FOLDER))"))
        names = ["adapter"]
        files = [file for item in job.images for file in collect_images(item, _subfolder_hint(item))]
        images = [load_references(files, resolution)]
    seed = job.config.seed
    return names, [Subject(batch, seed + index) for index, batch in enumerate(images)]


def _subfolder_hint(folder: Path) -> str:
    """What to do about pictures in an --images folder's sub-folders, which one adapter never reads."""
    subjects = either(f"--subjects {shlex.quote(str(folder))}", f"TrainJob(subjects={str(folder)!r})")
    return (f"move them up into {folder} to train on them, or pass {subjects} if each sub-folder is one subject "
            f"(an adapter each)")


def subject_folders(folder: Path, warn: bool = True) -> list[Path]:
    """The --subjects folder's sub-folders, one per subject, read as precompute reads identities: hidden
    ones (.ipynb_checkpoints) left out, and images lying beside them warned about, never trained."""
    if not folder.is_dir():
        what = "a file, not a folder" if folder.exists() else "no such folder"
        named = either(f"--subjects {folder}", f"TrainJob(subjects={str(folder)!r})")
        raise LowdimError(f"{named}: {what} (one sub-folder of images per subject)")
    folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise LowdimError(f"{folder}: expected one sub-folder of images per subject, found none")
    loose = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if loose and warn:
        are = "is" if len(loose) == 1 else "are"
        warnings.warn(f"{folder}: {counted(len(loose), 'image')} beside the subject sub-folders {are} not trained, "
                      f"e.g. {loose[0]}", stacklevel=3)
    return folders


def build_trainable(job: TrainJob, model: SDModel, names: list[str]):
    mode = mode_of(job)
    check_one_subject(mode, len(names))
    token = initial_token(job.initial, job.config.token)
    if mode == "full":
        return FullTrainable(model, job.train_text_encoder)
    if job.initial is not None:  # mode "relaxed", full being returned above
        return rank_relaxed_trainable(model, job.initial, rank=job.rank, merge_frozen=job.merge_frozen,
                                      subject_name=names[0], token=token, save_dtype=job.save_dtype,
                                      dropout=job.dropout)
    space = lowdim.get_space(job.space, job.space_options)
    if learns_tokens(space):
        if job.layers is not None:
            raise LowdimError(f"{option('layers', 'TrainJob')} does not apply to {space_named(job.space)}: it learns "
                              f"token vectors in the text encoder's input embedding, not weight layers")
        return ti_trainable(model, space, token=token, seed=job.config.seed, subject_names=names,
                            save_dtype=job.save_dtype)
    trainable = adapter_trainable(model, space, resolve_layers(job.layers, model.name), seed=job.config.seed,
                                  subject_names=names, token=token, save_dtype=job.save_dtype,
                                  dropout=job.dropout)
    warn_about_adjusted_options(job, trainable.adapters.info(trainable.name))
    return trainable


def warn_about_adjusted_options(job: TrainJob, info: lowdim.AdapterInfo) -> None:
    """Options given with --set that the space adjusted to fit some layers (LiDB's a and b clamped to a layer's
    width, say): the file records what was asked, the layers hold what fit. The defaults' adjustments (TinyFaces'
    64-wide layers take a = 64 of LiDB's 100) are the space's documented behaviour and stay quiet."""
    notes = adjusted_notes(info)  # a rank above a layer's was warned about by inject, naming the adapter
    if job.space_options and notes:
        given = " ".join(f"{key}={value}" for key, value in job.space_options.items())
        given = either(f"--set {given}", f"TrainJob(space_options={job.space_options!r})")
        warnings.warn(f"{given}: the space notes something on {len(notes)} of {len(info.layers)} "
                      f"layers (an option adjusted to fit, say), e.g. {notes[0]}", stacklevel=2)


ONE_SUBJECT = {"full": "full DreamBooth trains one subject at a time",
               "relaxed": "rank-relaxed finetuning starts from one adapter"}


def check_one_subject(mode: str, subjects: int) -> None:
    if subjects > 1 and mode in ONE_SUBJECT:
        raise LowdimError(f"{ONE_SUBJECT[mode]}; use {option('images', 'TrainJob')}, not "
                          f"{either('--subjects', 'subjects=')}")


def train_config(job: TrainJob) -> TrainConfig:
    """``job.config`` with the learning rate the run uses: --lr (``job.learning_rate``) or the config's own, else
    the mode's default; and the word it trains under: the config's, else the initial adapter's own, else sks. A
    copy: the caller's config is never changed, and may serve several jobs."""
    worded = dataclasses.replace(job.config, token=initial_token(job.initial, job.config.token))
    return job_rate(worded, job.learning_rate, "TrainJob", defaults.learning_rate(mode_of(job)))


def check_train_job(job: TrainJob) -> None:
    """Settings no training can run with, refused before anything loads or is written."""
    refuse_inference_mode()
    check_job_rate(job.learning_rate, "TrainJob")
    config = train_config(job)
    config.validate(least_steps=1)  # not validate's 0 (no step elsewhere): here it would save the untrained start
    if job.config.token is not None:  # one word, as --token is on the command line
        check_token(job.config.token, either("sks; with --init, the initial adapter's own word",
                                             "sks; with TrainJob(initial=...), the initial adapter's own word"))
    if job.rank < 1:
        raise LowdimError(f"{option('rank', 'TrainJob')} must be >= 1, got {job.rank}")
    check_mode_flags(job)
    check_dropout_option(job)
    if job.save_dtype not in SAVE_DTYPES:
        raise LowdimError(f"{option('save_dtype', 'TrainJob')} must be one of {', '.join(SAVE_DTYPES)}, got "
                          f"'{job.save_dtype}'"
                          + did_you_mean(str(job.save_dtype), DTYPE_MEANT, list(SAVE_DTYPES)))
    if job.subjects is not None:
        if job.images:  # one run trains the sub-folders or the pictures: the other would be dropped silently
            subjects, images = option("subjects", "TrainJob"), option("images", "TrainJob")
            raise LowdimError(f"{subjects} and {images} both name what to train: pass one ({subjects} trains one "
                              f"adapter per sub-folder, {images} one adapter)")
        check_one_subject(mode_of(job), len(subject_folders(job.subjects, warn=False)))  # before the load
    check_resolution(job.resolution, "TrainJob")
    check_training_dtype(job.device, job.dtype)
    if config.cuda_graphs:  # job.device's; train() checks a given model's own device again
        check_graphs(resolve_device(job.device), config.mixed_precision, config.gradient_checkpointing)
    refuse_out_in_model(job.out, job.model, "train", option("out", "TrainJob"), model_tree_outputs(job))
    run_outputs.check_output_paths(job)
    run_outputs.refuse_earlier_outputs(job)
    check_initial(job)  # last: the one check that reads a file's tensors


def check_initial(job: TrainJob) -> None:
    """--init's adapter read and checked as its load reads it (missing, damaged, not a lowdim adapter, from a newer
    lowdim, NaN values, a token that is no word, an embedding), before the model loads: a bad file then costs
    nothing, not a model load (gigabytes at SD1.5) before its line. Its layers are checked as it loads."""
    if job.initial is None or job.full:  # --full beside --init: check_mode_flags names the two
        return
    from lowdim_sd.attaching import read_adapter_file
    from lowdim_sd.textual_inversion import is_embedding, refuse_embedding_start

    if is_embedding(read_adapter_file(job.initial)):  # read first: a FIFO or a folder is refused unopened
        refuse_embedding_start(job.initial)


def model_tree_outputs(job: TrainJob) -> list[Path]:
    """What the run writes into ``job.out``, or may remove there (checkpoints; an earlier --full run's model, which
    an adapter run's --overwrite replaces): no model may lie under one of them."""
    return [*run_outputs.written_paths(job), job.out / checkpoints.FOLDER, job.out / run_outputs.MODEL]


def check_mode_flags(job: TrainJob, typed: Collection[str] = ()) -> None:
    """A setting the job's mode never reads (--space beside --full, --layers beside --init) is refused, not
    dropped without a word: one off its default, or one of the fields in ``typed``, which the CLI passes for
    the flags typed on the command line even at their default value (--space lidb, --merge-frozen)."""
    mode = "full" if job.full else "relaxed" if job.initial is not None else "adapter"
    unset = {item.name: item.default if item.default_factory is dataclasses.MISSING else item.default_factory()
             for item in dataclasses.fields(job)}
    for name, line in unread_settings(mode, job.merge_frozen):
        if name in typed or getattr(job, name) != unset[name]:
            raise LowdimError(line)


def check_dropout_option(job: TrainJob) -> None:
    """--dropout acts on an adapter's input: refused where no adapter trains, before anything loads."""
    dropout = job_option("dropout")
    if not 0 <= job.dropout < 1:  # NaN fails it too
        raise LowdimError(f"{dropout} must be a number in [0, 1) (0: off; 0.05 to 0.1 is usual), got {job.dropout}")
    if job.dropout and job.full:
        raise LowdimError(f"{dropout} drops an adapter's input, and {either('--full', 'TrainJob(full=True)')} trains "
                          f"the model's own weights, which carry no adapter: {leave_out('dropout')}")
    if job.dropout and job.initial is None and learns_tokens(job.space):
        raise LowdimError(f"{dropout} does not apply to {space_named(job.space)}: it learns token vectors, whose "
                          f"input is token ids, not features to drop; {leave_out('dropout')}")


@runs.one_run_per_folder(lambda job: job.out, run_outputs.output_names, check=check_train_job)
def run_train(job: TrainJob, progress: bool = True, model: SDModel | None = None) -> TrainResult:
    """Train as ``lowdim train`` does. A ``model`` given is handed back as it came, however the run ends: what
    trained is in ``job.out``'s files (load them with ``attach_adapters``), not left on the model."""
    if model is not None and job.full:
        raise LowdimError("run_train(model=...) hands the model back as it was given, and TrainJob(full=True) trains "
                          "the model's own weights: leave model= out (run_train loads its own and saves the trained "
                          "model)")
    if model is not None:
        check_given_model(model, job, "run_train(model=...)")
    with model.one_run() if model is not None else contextlib.nullcontext():  # before its adapters or checkpoints
        result = _run_train(job, progress, model)
    take_up_a_held_stop(result)
    return result


def take_up_a_held_stop(result: TrainResult) -> None:
    """A Ctrl-C or SIGTERM the script's handlers held over the last step's update or the final save
    (``stopping.held``): the run kept everything, and now stops as asked, saying so."""
    try:
        stopping.check()
    except KeyboardInterrupt as stop:
        written = ", ".join(map(str, result.outputs))
        raise runs.Interrupted(f"interrupted as the run ended (in its last step or its final save), which was "
                               f"finished first: wrote {written}, all {result.start_step + len(result.losses)} "
                               f"steps") from stop


def _run_train(job: TrainJob, progress: bool, model: SDModel | None) -> TrainResult:
    config = train_config(job)
    earlier = checkpoints.latest(job.out)
    if earlier is not None and not job.resume:
        if not job.overwrite:
            resume, overwrite = either("--resume", "resume=True"), either("--overwrite", "overwrite=True")
            raise LowdimError(f"{job.out} holds checkpoints of an earlier run (latest {earlier.name}); pass {resume} "
                              f"to continue it, {overwrite} to start over, or choose another {job_option('out')}")
        shutil.rmtree(job.out / checkpoints.FOLDER)  # else they would pass for this run's at --resume
    # Full DreamBooth trains the weights themselves: fp32 masters unless the user insists otherwise.
    dtype = "fp32" if job.dtype == "auto" and mode_of(job) == "full" else job.dtype
    given = model is not None
    model = model or load_sd(job.model, job.device, dtype, job.model_config)
    names, subjects = subject_sets(job, job.resolution or model.resolution)
    learns = learns_tokens(job.space) and not job.full and job.initial is None
    # A model run_train loaded itself is dropped after: nothing to hand back, and no unmerge to pay for.
    with left_as_given(model, tokens=learns, initial=job.initial) if given else contextlib.nullcontext():
        trainable = build_trainable(job, model, names)
        record_recipe(trainable, config, subjects, job.initial)  # prompt, steps, rate, images, --init: in its files
        if learns:  # [V] stands for every vector's token in the prompt; the files keep the identifier itself.
            vectors = token_options(lowdim.Adapters(model.modules).info(trainable.name).space).vectors
            config = dataclasses.replace(config, token=prompt_token(config_token(config), vectors))
        # A --subjects run's adapters: maybe the user's own, kept; named, so none passes for this run's. Past the
        # load and the images: a run refused for them says only its own line.
        run_outputs.warn_train_adapters_left(job)
        replaced = run_outputs.replaced_outputs(job)
        job.out.mkdir(parents=True, exist_ok=True)
        result = train(model, subjects, trainable, config, out_dir=job.out, resume=job.resume, progress=progress)
        run_outputs.remove_earlier(replaced)  # once this run's own are written: a stop keeps the earlier run whole
        return result
