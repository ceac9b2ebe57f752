"""The SD backend's jobs as plain functions: what CLI commands call and tests call directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.images import collect_images, load_references
from lowdim_sd.loading import SDModel, load_sd
from lowdim_sd.modes import FullTrainable, adapter_trainable, rank_relaxed_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, TrainResult, train

DEFAULT_LR = {"full": 5e-6, "lora": 1e-4, "lidb": 2e-3, "relaxed": 1e-3}


@dataclass
class TrainJob:
    """Everything ``lowdim train`` needs; one field per CLI option."""

    model: str
    images: list[Path] = field(default_factory=list)
    subjects: Path | None = None  # a folder of per-subject folders: K adapters trained in one batch
    space: str = "lidb"
    space_options: dict = field(default_factory=dict)
    layers: str | None = None
    full: bool = False
    train_text_encoder: bool = False
    initial: Path | None = None  # rank-relaxed fast finetuning from this adapter
    rank: int = 4
    merge_frozen: bool = True
    out: Path = Path("out")
    resume: bool = False
    device: str = "auto"
    dtype: str = "auto"
    model_config: str | None = None
    learning_rate: float | None = None
    config: TrainConfig = field(default_factory=TrainConfig)


def mode_of(job: TrainJob) -> str:
    if job.full:
        return "full"
    if job.initial is not None:
        return "relaxed"
    return job.space


def subject_sets(job: TrainJob, resolution: int) -> tuple[list[str], list[Subject]]:
    """(names, subjects): one subject from --images, or one per sub-folder of --subjects."""
    if job.subjects is not None:
        folders = sorted(p for p in Path(job.subjects).iterdir() if p.is_dir())
        if not folders:
            raise LowdimError(f"{job.subjects}: expected one sub-folder of images per subject, found none")
        names = [folder.name for folder in folders]
        images = [load_references(folder, resolution) for folder in folders]
    else:
        if not job.images:
            raise LowdimError("no reference images: pass --images FILE_OR_FOLDER (or --subjects FOLDER)")
        names = ["adapter"]
        images = [load_references(collect_images(job.images), resolution)]
    seed = job.config.seed
    return names, [Subject(batch, seed + index) for index, batch in enumerate(images)]


def build_trainable(job: TrainJob, model: SDModel, names: list[str]):
    mode = mode_of(job)
    if mode == "full":
        if len(names) > 1:
            raise LowdimError("full DreamBooth trains one subject at a time; use --images, not --subjects")
        return FullTrainable(model, job.train_text_encoder)
    if mode == "relaxed":
        if len(names) > 1:
            raise LowdimError("rank-relaxed finetuning starts from one adapter; use --images, not --subjects")
        return rank_relaxed_trainable(model, job.initial, rank=job.rank, merge_frozen=job.merge_frozen,
                                      subject_name=names[0], token=job.config.token)
    space = lowdim.get_space(job.space, job.space_options)
    return adapter_trainable(model, space, resolve_layers(job.layers), seed=job.config.seed, subject_names=names,
                             token=job.config.token)


def run_train(job: TrainJob, progress: bool = True, model: SDModel | None = None) -> TrainResult:
    config = job.config
    config.learning_rate = job.learning_rate or DEFAULT_LR.get(mode_of(job), 1e-4)
    config.validate()
    if job.rank < 1:
        raise LowdimError(f"--rank must be >= 1, got {job.rank}")
    # Full DreamBooth trains the weights themselves: fp32 masters unless the user insists otherwise.
    dtype = "fp32" if job.dtype == "auto" and mode_of(job) == "full" else job.dtype
    model = model or load_sd(job.model, job.device, dtype, job.model_config)
    names, subjects = subject_sets(job, model.resolution)
    trainable = build_trainable(job, model, names)
    job.out.mkdir(parents=True, exist_ok=True)
    return train(model, subjects, trainable, config, out_dir=job.out, resume=job.resume, progress=progress)
