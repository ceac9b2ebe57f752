"""``lowdim train-hypernet``'s settings checked before any model or data loads: one line for the first that
no run can train with, or that would do nothing in this run; and, once the data set is known, whether a
--features file holds every image the run reads."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim.errors import LowdimError
from lowdim_sd.devices import check_training_dtype
from lowdim_sd.hypertrain_io import check_counts, warn_about_another_phrase
from lowdim_sd.retrieval_fill import check_retrieval_job

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import Tensor

    from lowdim_sd.hypertrain import HyperTrainJob
    from lowdim_sd.weight_dataset import WeightDataset


def check_job(job: HyperTrainJob) -> None:
    """Settings nothing can train with, refused before any model or data loads."""
    check_retrieval_job(job)
    if job.resume and job.overwrite:
        raise LowdimError("--resume continues the run in --out and --overwrite starts it over: pass one")
    if job.hyper.get("encoder") and job.hyper.get("encoder_config") is not None:
        # A packaged encoder would win and the file would record a config it never used; a hub id would be a
        # label only: either way one of the two is not what the user asked for.
        raise LowdimError("--encoder and --encoder-config are alternatives (a pretrained encoder, or a random one "
                          "built from a config): pass one")
    retrieval = job.hyper.get("architecture") == "retrieval"  # its encoder is always frozen
    if job.features is not None and not (job.hyper.get("freeze_encoder") or retrieval):
        raise LowdimError("--features stand in for a frozen encoder: add --freeze-encoder")
    if job.extra_images and job.alpha <= 0:
        raise LowdimError("--extra-images have no precomputed weights: they need the diffusion term (--alpha > 0)")
    if job.alpha < 0 or job.beta < 0 or job.alpha == job.beta == 0:
        raise LowdimError("--alpha and --beta must be >= 0 and not both 0 (eq. 2 would have no loss)")
    check_counts(job)
    if job.alpha > 0:  # the diffusion term trains through the model, on accelerate's device
        check_training_dtype("cpu" if job.cpu else "auto", job.dtype)
    if job.diffusion_iterates not in ("all", "last"):
        raise LowdimError(f"--diffusion-iterates must be all or last, got '{job.diffusion_iterates}'")
    if job.diffusion_target not in ("noise", "teacher"):
        raise LowdimError(f"--diffusion-target must be noise or teacher, got '{job.diffusion_target}'")
    refuse_what_does_nothing(job)
    warn_about_another_phrase(job)


def refuse_what_does_nothing(job: HyperTrainJob) -> None:
    """A flag whose part of the run is off would be silently ignored, and the file would not say it was."""
    from lowdim_sd.hypertrain import HyperTrainJob as defaults_of  # the class's field defaults
    if job.extra_batch_size is not None and not job.extra_images:
        raise LowdimError("--extra-batch-size sizes the --extra-images batches: add --extra-images FOLDER")
    if job.alpha == 0:
        for flag, value, default in (("--diffusion-target", job.diffusion_target, defaults_of.diffusion_target),
                                     ("--diffusion-iterates", job.diffusion_iterates, defaults_of.diffusion_iterates)):
            if value != default:
                raise LowdimError(f"{flag} {value} shapes the diffusion term, which --alpha 0 turns off")
    if job.key_steps != defaults_of.key_steps and job.key_pairs is None:
        raise LowdimError("--key-steps trains the keys learned from --key-pairs: add --key-pairs FOLDER")


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
        extra = Images([Path(folder) for folder in job.extra_images], like)

        def extra_image(item: int) -> Tensor:
            return extra[item][0]

        images.update({path: partial(extra_image, item) for item, path in enumerate(extra.paths)})
    if job.key_pairs is not None:  # learn_keys reads the photos of people with two or more
        read = photo_reader(like)
        images.update({path: partial(read, path) for person in discover_identities(Path(job.key_pairs))
                       if len(person.images) >= 2 for path in person.images})
    return images
