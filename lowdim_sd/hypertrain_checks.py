"""``lowdim train-hypernet``'s settings checked before any model or data loads: one line for the first that
no run can train with, or that would do nothing in this run; and, once the data set is known, whether a
--features file holds every image the run reads. Each line names a setting as its reader gave it: the flag under
the ``lowdim`` command, ``HyperTrainJob(field=...)`` from Python (``lowdim.option_words``)."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim.errors import LowdimError
from lowdim.option_words import either
from lowdim_sd import runs
from lowdim_sd.devices import check_training_dtype
from lowdim_sd.hypertrain_io import warn_about_another_phrase
from lowdim_sd.hypertrain_words import FLAGS, OWNER, hyper_key, name
from lowdim_sd.retrieval_fill import check_retrieval_job
from lowdim_sd.train_settings import check_types

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import Tensor

    from lowdim_sd.hypertrain import HyperTrainJob
    from lowdim_sd.weight_dataset import WeightDataset

# HyperTrainJob's settings a Python caller may give of another type (a str read from a YAML file or the
# environment); the CLI's parsing gives these types. None is allowed for those in OPTIONAL.
JOB_TYPES: dict[str, type] = {
    **dict.fromkeys(("steps", "batch_size", "extra_batch_size", "key_steps", "key_renders", "val_identities",
                     "val_every", "log_every", "checkpoint_every", "keep_checkpoints", "seed", "num_workers"),
                    numbers.Integral),
    **dict.fromkeys(("max_minutes", "learning_rate", "weight_decay", "alpha", "beta", "val_fraction",
                     "max_grad_norm"), numbers.Real),
    **dict.fromkeys(("resume", "overwrite", "augment", "all_images", "gradient_checkpointing", "cpu"), bool)}
OPTIONAL = ("extra_batch_size", "val_identities", "max_minutes", "max_grad_norm")
WORDS = ("model", "prompt", "token", "model_config")  # a str, or None for the default


def check_job(job: HyperTrainJob) -> None:
    """Settings nothing can train with, refused before any model or data loads."""
    check_job_types(job)
    check_retrieval_job(job)
    if job.resume and job.overwrite:
        raise LowdimError(either("--resume continues the run in --out and --overwrite starts it over: pass one",
                                 "resume=True continues the run in out and overwrite=True starts it over: pass one"))
    if job.hyper.get("encoder") and job.hyper.get("encoder_config") is not None:
        # A packaged encoder would win and the file would record a config it never used; a hub id would be a
        # label only: either way one of the two is not what the user asked for.
        raise LowdimError(f"{hyper_key('encoder')} and {hyper_key('encoder_config')} are alternatives (a pretrained "
                          f"encoder, or a random one built from a config): pass one")
    retrieval = job.hyper.get("architecture") == "retrieval"  # its encoder is always frozen
    if job.features is not None and not (job.hyper.get("freeze_encoder") or retrieval):
        freeze = either("add --freeze-encoder", 'add "freeze_encoder": True to hyper')
        raise LowdimError(f"{name('features')} stand in for a frozen encoder: {freeze}")
    if job.extra_images and job.alpha <= 0:
        raise LowdimError(f"{name('extra_images')} have no precomputed weights: they need the diffusion term "
                          f"({name('alpha')} > 0)")
    if not (job.alpha >= 0 and job.beta >= 0) or job.alpha == job.beta == 0:  # NaN too
        raise LowdimError(f"{name('alpha')} and {name('beta')} must be >= 0 and not both 0 (eq. 2 would have no "
                          f"loss)")
    check_counts(job)
    if job.alpha > 0:  # the diffusion term trains through the model, on accelerate's device
        check_training_dtype("cpu" if job.cpu else "auto", job.dtype)
    if job.diffusion_iterates not in ("all", "last"):
        raise LowdimError(f"{name('diffusion_iterates')} must be all or last, got '{job.diffusion_iterates}'")
    if job.diffusion_target not in ("noise", "teacher"):
        raise LowdimError(f"{name('diffusion_target')} must be noise or teacher, got '{job.diffusion_target}'")
    refuse_what_does_nothing(job)
    warn_about_another_phrase(job)


def check_job_types(job: HyperTrainJob) -> None:
    """A setting of the wrong type from Python is one line, not a TypeError from the comparisons after it, nor
    ``steps=True`` training one step."""
    check_types(job, JOB_TYPES, OWNER, optional=OPTIONAL, flags=FLAGS)
    for field in WORDS:
        value = getattr(job, field)
        if value is not None and not isinstance(value, str):
            raise LowdimError(f"{name(field)} must be a str or None, got {value!r:.40}")
    if not isinstance(job.dtype, str):  # a word's value is checked where the device is known
        raise LowdimError(f"{name('dtype')} must be a str ('auto', 'fp32', 'fp16' or 'bf16'), got {job.dtype!r:.40}")
    if not isinstance(job.hyper, dict):
        raise LowdimError(f"{name('hyper')} must be a dict of HyperConfig options, got {job.hyper!r:.40}")
    weights: object = job.weights
    folders = [weights] if isinstance(weights, (str, os.PathLike)) else weights
    if not (isinstance(folders, Sequence) and folders and all(isinstance(f, (str, os.PathLike)) for f in folders)):
        raise LowdimError(f"{name('weights')} must be a weight folder or a list of them, got {weights!r:.60}")


def check_counts(job: HyperTrainJob) -> None:
    """Counts and rates that must be positive."""
    positive = {"steps": job.steps, "batch_size": job.batch_size, "learning_rate": job.learning_rate,
                "keep_checkpoints": job.keep_checkpoints}  # the last has no flag: only Python sets it
    at_least_zero = {"val_every": job.val_every, "log_every": job.log_every,  # 0: never
                     "checkpoint_every": job.checkpoint_every, "weight_decay": job.weight_decay,
                     "num_workers": job.num_workers}
    for field, value in positive.items():
        if not value > 0:
            raise LowdimError(f"{name(field)} must be > 0, got {value}")
    for field, value in at_least_zero.items():
        if not value >= 0:
            raise LowdimError(f"{name(field)} must be >= 0, got {value}")
    if job.max_minutes is not None and not job.max_minutes > 0:  # 0 would save a one-step network as the result
        raise LowdimError(f"{name('max_minutes')} must be > 0, got {job.max_minutes}")
    if job.extra_batch_size is not None and job.extra_batch_size < 1:
        raise LowdimError(f"{name('extra_batch_size')} must be >= 1 (left out: {either('--batch-size', 'batch_size')})"
                          f", got {job.extra_batch_size}")
    if not 0 <= job.val_fraction < 1:
        raise LowdimError(f"{name('val_fraction')} must be in [0, 1), got {job.val_fraction}")
    if job.val_identities is not None and job.val_identities < 0:
        raise LowdimError(f"{name('val_identities')} must be >= 0, got {job.val_identities}")
    if job.mixed_precision not in runs.MIXED_PRECISION:
        raise LowdimError(f"{name('mixed_precision')} must be one of {', '.join(runs.MIXED_PRECISION)}, got "
                          f"'{job.mixed_precision}'")
    for field in ("learning_rate", "weight_decay", "alpha", "beta"):  # inf: every weight NaN after one step
        if math.isinf(getattr(job, field)):
            raise LowdimError(f"{name(field)} must be a finite number, got {getattr(job, field)}")
    norm = job.max_grad_norm  # a negative one would scale every gradient by a negative number: gradient ascent
    if norm is not None and norm != 0 and not (math.isfinite(norm) and norm > 0):
        raise LowdimError(f"{name('max_grad_norm')} must be a number > 0, or 0 or None for no clipping, got {norm}")


def refuse_what_does_nothing(job: HyperTrainJob) -> None:
    """A setting whose part of the run is off would be silently ignored, and the file would not say it was."""
    from lowdim_sd.hypertrain import HyperTrainJob as defaults_of  # the class's field defaults
    if job.extra_batch_size is not None and not job.extra_images:
        raise LowdimError(f"{name('extra_batch_size')} sizes the {name('extra_images')} batches: "
                          f"{either('add --extra-images FOLDER', 'pass extra_images=FOLDER')}")
    if job.alpha == 0:
        for field, value, default in (("diffusion_target", job.diffusion_target, defaults_of.diffusion_target),
                                      ("diffusion_iterates", job.diffusion_iterates, defaults_of.diffusion_iterates)):
            if value != default:
                given = either(f"{name(field)} {value}", f"{OWNER}({field}={value!r})")
                raise LowdimError(f"{given} shapes the diffusion term, which {either('--alpha 0', 'alpha=0')} turns "
                                  f"off")
    if job.key_steps != defaults_of.key_steps and job.key_pairs is None:
        raise LowdimError(f"{name('key_steps')} trains the keys learned from {name('key_pairs')}: "
                          f"{either('add --key-pairs FOLDER', 'pass key_pairs=FOLDER')}")


def check_weights_finite(full: WeightDataset) -> None:
    """Every identity's θ in the weight folders read once, before anything is written into the run's -o: a row
    of NaN or Inf is refused in one line naming its shard, not steps in, with split.json left behind."""
    from lowdim_sd.weight_shards import refuse_nonfinite

    for position, folder in enumerate(full.folders):
        refuse_nonfinite(folder, [entry for entry in full.entries if entry["folder"] == position])


def check_features_cover(job: HyperTrainJob, train_set: WeightDataset, val_set: WeightDataset | None,
                         progress: bool = False) -> None:
    """--features hold every image this run reads (weights' images, --extra-images, --key-pairs photos), or
    one line naming the first one missing, before the encoder or model loads and before anything is written.

    Reading the weights' images here also fills their crop caches, which training then reads from."""
    from lowdim_sd.feature_file import check_covers

    if job.features is None:
        return
    images: dict[Path, Callable[[], Tensor]] = {}
    for data in (train_set, val_set) if val_set is not None else (train_set,):
        images.update({data.image_path(item): partial(data.image, item) for item in range(len(data))})
    images.update(_other_images(job, train_set))
    inputs = [*dict.fromkeys(train_set.roots), *job.extra_images, *([job.key_pairs] if job.key_pairs else [])]
    remedy = (f"make it as the weights' images were read: lowdim encoder-features "
              f"{' '.join(f'-i {folder}' for folder in inputs)} --resolution {train_set.resolution}"
              f"{_crop_flags(train_set)}")
    check_covers(job.features, images, remedy, progress)


def _crop_flags(data: WeightDataset) -> str:
    """encoder-features' flags that read images as the weight folder's index.json says they were cropped."""
    from lowdim_sd.faces import DEFAULT_MARGIN

    if not data.crop:
        return ""
    # str of the float: every digit the index holds (a rounded margin would crop other pixels)
    margin = f" --crop-margin {data.crop_margin}" if data.crop_margin != DEFAULT_MARGIN else ""
    index = f" --face-index {data.face_index}" if data.face_index is not None else ""
    return f" --crop{margin}{index}"


def _other_images(job: HyperTrainJob, like: WeightDataset) -> dict[Path, Callable[[], Tensor]]:
    """The --extra-images and --key-pairs photos, each read as training reads it."""
    from lowdim_sd.hypertrain_io import Images
    from lowdim_sd.precompute import discover_identities
    from lowdim_sd.retrieval_fill import photo_reader

    images: dict[Path, Callable[[], Tensor]] = {}
    if job.extra_images:
        extra = Images(list(job.extra_images), like)

        def extra_image(item: int) -> Tensor:
            return extra[item][0]

        images.update({path: partial(extra_image, item) for item, path in enumerate(extra.paths)})
    if job.key_pairs is not None:  # learn_keys reads the photos of people with two or more
        read = photo_reader(like)
        images.update({path: partial(read, path) for person in discover_identities(job.key_pairs)
                       if len(person.images) >= 2 for path in person.images})
    return images
