"""Each bench row trains what its label says (review CD, finding 5), and a row whose adapter another worker
writes in the race between the look and the claim is drawn with that adapter, not as the base model (A1).

The table test builds every row's job with the training stubbed, recording what it was asked: the space, the
layers, the hypernetwork iterations, the steps, the learning rate, and what the row's size counts."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import pytest
import torch

import lowdim_sd.modes as modes
import lowdim_sd.personalize as personalize
import lowdim_sd.personalize_resolve as personalize_resolve
import lowdim_sd.textual_inversion as textual_inversion
from lowdim_sd.bench import methods as bench_methods
from lowdim_sd.bench.methods import METHODS, Personalized, personalize_subject
from lowdim_sd.loading import load_sd

DEFAULT_LAYERS = "default"  # the model's own layer set, as `lowdim train` picks without --layers
ADAPTER_BYTES = 333
# A saved full-DreamBooth pipeline: only the finetuned parts (UNet, text encoder) are the row's size.
PIPELINE_BYTES = {"unet": 100, "text_encoder": 20, "vae": 7000, "safety_checker": 900}
FINETUNED_BYTES = PIPELINE_BYTES["unet"] + PIPELINE_BYTES["text_encoder"]


@dataclasses.dataclass(frozen=True)
class Asked:
    """What a row's training was asked; ``size`` is the row's reported bytes."""

    trains: str  # "hyper" (prediction, then finetune), "adapter", "full", "ti", or "nothing"
    space: str | None = None
    layers: str | None = None  # "unet", DEFAULT_LAYERS, or None: the hyper rows' paper default
    iterations: int | None = None  # hyper rows: None is the checkpoint's own count
    steps: int = 0
    learning_rate: float | None = None
    rank: int | None = None  # hyper rows: the rank-relaxed LoRA's; DreamBooth adapters: their space's own
    hypernet: bool = False
    keep_styles: float = 0.0
    describe: bool = False
    size: int = 0


def hyper(steps: int, **kw) -> Asked:
    return Asked("hyper", "lidb", steps=steps, rank=4, hypernet=True, size=ADAPTER_BYTES, **kw)


EXPECTED: dict[str, Asked] = {
    "ours": hyper(40),
    "ours-k1": hyper(40, iterations=1),
    "only-hyper": hyper(0),
    "ours-unet": hyper(40, layers="unet"),
    "only-hyper-unet": hyper(0, layers="unet"),
    "ours-styles": hyper(40, keep_styles=0.2),
    "ours-described": hyper(40, describe=True),
    "ours-described-styles": hyper(40, describe=True, keep_styles=0.05),
    "only-hyper-described": hyper(0, describe=True),
    "no-hyper": dataclasses.replace(hyper(40), hypernet=False),
    "lidb-db": Asked("adapter", "lidb", DEFAULT_LAYERS, steps=400, learning_rate=5e-3, rank=1, size=ADAPTER_BYTES),
    "lora-db": Asked("adapter", "lora", DEFAULT_LAYERS, steps=1000, learning_rate=1e-4, rank=4, size=ADAPTER_BYTES),
    "dreambooth": Asked("full", steps=1200, learning_rate=5e-6, size=FINETUNED_BYTES),
    "db-agg-1": Asked("full", steps=400, learning_rate=2e-5, size=FINETUNED_BYTES),
    "db-agg-2": Asked("full", steps=40, learning_rate=1e-4, size=FINETUNED_BYTES),
    "ti": Asked("ti", "ti", steps=5000, learning_rate=4e-2, size=ADAPTER_BYTES),
    "base": Asked("nothing"),
    "base-described": Asked("nothing", describe=True),
}


def test_every_row_has_an_expected_job():
    assert set(EXPECTED) == set(METHODS)


class Recorder:
    """Stands in for the training calls of methods.py, noting what each was asked."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.seen = folder, {}
        monkeypatch.setattr(personalize_resolve, "resolve_run", self.resolve_run)
        monkeypatch.setattr(personalize, "predict_initial", lambda model, run, reference: None)
        monkeypatch.setattr(personalize, "initial_trainable", lambda model, run, predicted: "hyper")
        monkeypatch.setattr(personalize, "finetune_config", lambda run: None)
        monkeypatch.setattr(modes, "adapter_trainable", self.adapter_trainable)
        monkeypatch.setattr(modes, "FullTrainable", self.full_trainable)
        monkeypatch.setattr(textual_inversion, "ti_trainable", self.ti_trainable)
        monkeypatch.setattr(bench_methods, "train", self.train)
        monkeypatch.setattr(bench_methods, "model_describer", lambda name: lambda reference: "brown hair")

    def resolve_run(self, job: personalize.PersonalizeJob) -> types.SimpleNamespace:
        self.seen.update(space=job.space, layers=job.layers, iterations=job.iterations, steps=job.steps,
                         learning_rate=job.learning_rate, rank=job.rank, hypernet=job.hypernet is not None,
                         keep_styles=job.keep_styles, describe=job.describe)
        assert job.no_hyper == (job.hypernet is None) and job.only_hyper == (job.steps == 0)
        return types.SimpleNamespace(describer=None, looks="", seed=job.seed, hypernet=None)

    def adapter_trainable(self, model, space, layers, **kw) -> str:
        default = modes.resolve_layers(None, model.name)
        self.seen.update(space=space.name, rank=getattr(space.config, "rank", None),
                         layers=DEFAULT_LAYERS if layers == default else str(layers))
        return "adapter"

    def full_trainable(self, model, train_text_encoder: bool = False) -> str:
        assert train_text_encoder, "full DreamBooth trains the text encoder too"
        return "full"

    def ti_trainable(self, model, space, **kw) -> str:
        self.seen.update(space=space.name)
        return "ti"

    def train(self, model, subjects, trainable: str, config, **kw) -> types.SimpleNamespace:
        self.seen["trains"] = trainable
        if config is not None:  # the hyper rows' config is personalize's (finetune_config), from the job above
            self.seen.update(steps=config.steps, learning_rate=config.learning_rate)
        if trainable == "full":
            out = self.folder / "model"
            for part, size in PIPELINE_BYTES.items():
                (out / part).mkdir(parents=True)
                (out / part / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * size)
        else:
            out = self.folder / "adapter.safetensors"
            out.write_bytes(b"x" * ADAPTER_BYTES)
        return types.SimpleNamespace(outputs=[out])


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_row_trains_what_its_label_says_and_counts_its_own_size(name, tmp_path, monkeypatch):
    recorder = Recorder(tmp_path, monkeypatch)
    model = types.SimpleNamespace(name="tiny", device=torch.device("cpu"), resolution=16)
    done = personalize_subject(model, METHODS[name], torch.zeros(3, 16, 16), tmp_path, Path("hypernet.pt"))
    seen = recorder.seen
    asked = Asked(trains=seen.get("trains", "nothing"), space=seen.get("space"), layers=seen.get("layers"),
                  iterations=seen.get("iterations"), steps=seen.get("steps", 0),
                  learning_rate=seen.get("learning_rate"), rank=seen.get("rank"), hypernet=seen.get("hypernet", False),
                  keep_styles=seen.get("keep_styles", 0.0), describe=seen.get("describe", bool(done.looks)),
                  size=done.bytes)
    assert asked == EXPECTED[name]


def test_a_tiny_models_full_dreambooth_row_counts_its_unet_and_text_encoder_only(tiny_sd, faces, tmp_path):
    row = dataclasses.replace(METHODS["dreambooth"], steps=1)
    done = personalize_subject(load_sd(str(tiny_sd)), row, faces[0], tmp_path / "work", None)
    folder = done.kept_file()
    weights = {part: sum(f.stat().st_size for f in (folder / part).glob("*.safetensors"))
               for part in ("unet", "text_encoder", "vae")}
    assert weights["vae"] > 0  # the saved pipeline holds more than the finetuned parts
    assert done.bytes == weights["unet"] + weights["text_encoder"]


def test_a_rows_adapter_written_between_the_look_and_the_claim_is_drawn_not_the_base_model(tmp_path, monkeypatch):
    # Another worker finishes ROW's file after this task found none but before it claims the file: the task must
    # draw that file (attach it), not believe it trained one and draw the bare model as the row.
    import lowdim_sd.generate as generate
    from lowdim_sd.bench import quality, shared_adapter
    from lowdim_sd.bench.batched import keep_adapter
    from lowdim_sd.bench.quality_job import QualityJob, Task

    job = QualityJob(identities=None, out=tmp_path / "out", hypernet=Path("hypernet.pt"))
    elsewhere = tmp_path / "other-worker.safetensors"
    elsewhere.write_bytes(b"x" * ADAPTER_BYTES)
    real_claim = shared_adapter.claim

    def claim_after_the_other_worker_wrote(path: Path) -> bool:
        keep_adapter(job.out, "ours", "id-0", Personalized(elsewhere, ADAPTER_BYTES, 2.5), "cpu")
        return real_claim(path)

    def no_training(*args, **kwargs):
        raise AssertionError("trained the adapter another worker had just written")

    attached: list = []
    monkeypatch.setattr(shared_adapter, "claim", claim_after_the_other_worker_wrote)
    monkeypatch.setattr(quality, "personalize_subject", no_training)
    monkeypatch.setattr(generate, "attach_adapters", lambda model, files: attached.extend(files))
    done = quality._personalize(job, Task("ours", "id-0", "ref.png"), "model", torch.zeros(3, 16, 16), tmp_path)
    assert done.seconds == 2.5 and done.file == tmp_path / "out" / "adapters" / "ours" / "id-0.safetensors"
    assert attached == [(done.file, 1.0)]
