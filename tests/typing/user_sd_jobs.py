"""A user's script as docs/sd.md and docs/eval.md write it, for a type checker to read (never run): the jobs take
str paths and read them back as Paths, the documented imports are exported, and a missing job field is still
an error. ``tests/test_typing_sd_jobs.py`` runs mypy on it; a line ending ``# expect: CODE`` must be that error,
and every other line must pass."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lowdim_sd.eval.job import TINYFACES_METRICS, EvalJob
from lowdim_sd.eval.report import EvalReport, write_report
from lowdim_sd.generate import GenerateConfig
from lowdim_sd.hypertrain import HyperTrainJob
from lowdim_sd.loading import SDModel
from lowdim_sd.merged_model import save_merged
from lowdim_sd.personalize import PersonalizeJob, PersonalizeResult
from lowdim_sd.precompute import PrecomputeJob
from lowdim_sd.train import Subject, TrainConfig, TrainResult
from lowdim_sd.ui.studio import StudioConfig
from lowdim_sd.workflows import TrainJob


def personalize_job() -> Path:
    job = PersonalizeJob(model="tinyfaces", image="me.jpg", out="me", hypernet="hyper.safetensors")
    hypernet: Path | None = job.hypernet
    print(hypernet)
    return job.out / "adapter.safetensors"


def train_jobs(config: TrainConfig) -> list[Path]:
    job = TrainJob(model="tinyfaces", images=["me.jpg"], out="me-lidb", config=config)
    one = TrainJob(model="tinyfaces", images="faces", initial="me/adapter.safetensors", subjects=None)
    initial: Path | None = one.initial
    print(initial, one.subjects)
    return [job.out / "adapter.safetensors", *job.images, *one.images]


def precompute_and_hypernet_jobs() -> list[Path]:
    weights = PrecomputeJob(model="tinyfaces", identities="people", out="weights", init="mean.safetensors")
    init: Path | None = weights.init
    hyper = HyperTrainJob(weights="weights", out="hypernet", extra_images=["extra"], features="features.safetensors",
                          image_root="people", key_pairs="pairs")
    extra: list[Path] = hyper.extra_images
    others: list[Path | None] = [init, hyper.features, hyper.image_root, hyper.key_pairs]
    print(others)
    return [weights.out / "index.json", hyper.out / "hypernet.safetensors", *extra]


def eval_job(report: EvalReport) -> tuple[Path, Path]:
    job = EvalJob(folder="images", references=("face.png",), metrics=TINYFACES_METRICS)
    one = EvalJob(folder="images", references="face.png", metrics="tinyfaces-identity,tinyfaces-style")
    references: tuple[Path, ...] = job.references + one.references
    names: tuple[str, ...] = one.metrics
    print(references, names)
    return write_report(report, "results")


def generate_config() -> list[int]:
    config = GenerateConfig(prompts="a photo of a [V] face", seeds=3)
    seeds: list[int] = config.seeds
    return [*seeds, *GenerateConfig(prompts=["a [V] face"], seeds=range(4)).seeds]


def merged(model: SDModel) -> Path:
    path, tokens = save_merged(model, [("me/adapter.safetensors", 0.8)], "merged.safetensors")
    print(tokens)
    return path


def studio() -> Path:
    return StudioConfig(out="ui-runs").out / "runs"


def results(result: PersonalizeResult, trained: TrainResult, subject: Subject) -> Image.Image | None:
    print(trained.outputs, subject.seed)
    return result.gallery[0][1] if result.gallery else None


def mistakes() -> None:
    PersonalizeJob(model="tinyfaces")  # expect: call-arg
    PrecomputeJob(model="tinyfaces")  # expect: call-arg
    EvalJob()  # expect: call-arg
    GenerateConfig()  # expect: call-arg
    TrainJob(model="tinyfaces", out=3)  # expect: arg-type
    EvalJob(folder="images", references=3)  # expect: arg-type
    GenerateConfig(prompts="a [V] face", seeds=["0"])  # expect: list-item
