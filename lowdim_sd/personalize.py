"""``lowdim personalize``: one face image in, a tiny adapter (and a preview grid) out, with stage times.

The pipeline is the paper's phase 2: an initial adapter in the chosen space (the hypernetwork's
prediction once one is given; zero otherwise, the paper's "No Hyper" ablation), frozen, plus a
LoRA of rank r > 1 trained for a few steps (rank-relaxed fast finetuning, §4.3).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

import lowdim
from lowdim.errors import LowdimError
from lowdim.registry import get_registry
from lowdim_sd.face_inputs import load_face_image, resolve_crop
from lowdim_sd.images import to_pil
from lowdim_sd.loading import SDModel, canonical_model, load_sd
from lowdim_sd.modes import AdapterTrainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, train


@dataclass
class PersonalizeJob:
    model: str
    image: Path
    space: str = "lidb"
    space_options: dict = field(default_factory=dict)
    layers: str | None = None
    steps: int | None = None  # default: 40 with a hypernetwork (the paper), SCRATCH_STEPS without
    rank: int = 4
    learning_rate: float | None = None  # default: 3e-3 (chosen on validation identities, docs/results.md)
    token: str = "sks"
    seed: int = 0  # the LoRA's init, the training noise and the preview
    # Seed of the initial adapter's frozen bases (LiDB's A_aux, B_aux). None: ``seed``. A hypernetwork
    # sets it to the seed of the weights it learned from, since its predictions live in those bases.
    bases_seed: int | None = None
    out: Path = Path("personalized")
    export: list[str] = field(default_factory=list)
    preview: bool = True
    preview_steps: int = 30
    device: str = "auto"
    dtype: str = "auto"
    hypernet: Path | None = None  # a trained hypernetwork checkpoint (phase 1)
    no_hyper: bool = False  # ablation: fast finetune from zero even when a hypernetwork is given
    only_hyper: bool = False  # ablation: the prediction alone, no finetuning
    iterations: int | None = None  # hypernetwork refinement steps (default: the checkpoint's)
    crop: bool | None = None  # crop the image to the face; None: the backend's default (see face_inputs)
    crop_margin: float = 0.6  # room around the face, as a fraction of its width on each side
    face_index: int | None = None  # which face when there are several (0: the largest)


SCRATCH_STEPS = 600  # from zero, 40 steps barely move the identity (see docs/sd.md)


def schedule(job: PersonalizeJob) -> tuple[int, float]:
    """(steps, learning rate): the paper's 40 steps after a prediction; more without one."""
    if job.hypernet is not None:  # --no-hyper keeps the same budget: that is the paper's ablation
        return (40 if job.steps is None else job.steps), job.learning_rate or 3e-3
    return (SCRATCH_STEPS if job.steps is None else job.steps), job.learning_rate or 3e-3


@dataclass
class PersonalizeResult:
    adapter: Path
    exports: list[Path] = field(default_factory=list)
    preview: Path | None = None
    stages: dict[str, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)


@contextmanager
def stage(result: PersonalizeResult, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        result.stages[name] = time.perf_counter() - started


def initial_trainable(model: SDModel, job: PersonalizeJob, predicted: dict | None) -> AdapterTrainable:
    """The adapter to finetune: the initial one (predicted, or zero) frozen and merged, plus LoRA rank r.

    With ``only_hyper`` it is the predicted adapter alone, in its own space.
    """
    from lowdim.spaces.stack import StackSpace

    initial = lowdim.get_space(job.space, job.space_options)
    adapters = lowdim.Adapters(model.modules)
    metadata = {"base_model": model.base_model_id, "token": job.token}
    layers = resolve_layers(job.layers)
    bases_seed = job.seed if job.bases_seed is None else job.bases_seed
    if job.only_hyper:
        adapters.add("subject", initial, layers, seed=bases_seed)
        if predicted is not None:
            adapters.load_tensors("subject", {k: {p: v[0] for p, v in t.items()} for k, t in predicted.items()})
        return AdapterTrainable(model, "subject", ["adapter"], metadata)
    stack = StackSpace.of([(initial, bases_seed)], lowdim.get_space("lora", rank=job.rank), merge_frozen=True)
    adapters.add("subject", stack, layers, seed=job.seed)
    if predicted is not None:
        with torch.no_grad():
            for layer, slot in adapters.slots("subject").items():
                for name, value in predicted[layer].items():
                    slot.params[f"c0_{name}"].copy_(value[0])
        adapters.merge("subject", part="frozen")  # the paper adds the prediction to the weights (§4.3)
    return AdapterTrainable(model, "subject", ["adapter"], metadata)


def predict_initial(model: SDModel, job: PersonalizeJob, reference: torch.Tensor) -> dict | None:
    """The hypernetwork's LiDB prediction for the reference image, checked against this target."""
    if job.hypernet is None or job.no_hyper:
        return None
    from lowdim.hyper import load_hypernet
    from lowdim.sizing import layer_specs

    layer_set = resolve_layers(job.layers)
    space = lowdim.get_space(job.space, job.space_options)
    net = load_hypernet(job.hypernet, model=canonical_model(job.model), space=space, layer_set=layer_set.name,
                        layers=layer_specs(model.modules, layer_set))
    image = reference[None]  # the encoder resizes (and normalises) it as it was trained to
    # The prediction lives in the bases of the seed the training weights were made with.
    job.bases_seed = int(net.metadata.get("adapter_seed", job.seed))
    with torch.no_grad():
        return net.eval()(image, iterations=job.iterations)


def default_hypernet(model_name: str) -> Path | None:
    """The hypernetwork the model's backend ships, if any (TinyFaces does)."""
    entry = get_registry().backends.get(model_name)
    path = getattr(entry.value, "default_hypernet", None) if entry else None
    return Path(path) if path else None


def fitting_default_hypernet(job: PersonalizeJob) -> Path | None:
    """The backend's hypernetwork when it predicts the space and layers asked for; else None, with a note.

    A shipped default must not turn --space/--set/--layers into errors about a file the user never named.
    """
    from safetensors import safe_open

    path = default_hypernet(job.model)
    if path is None:
        return None
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
    space = lowdim.get_space(job.space, job.space_options)
    made_for = (header.get("space"), json.loads(header.get("space_config", "null")), header.get("layer_set"))
    if made_for == (space.name, space.config.to_dict(), resolve_layers(job.layers).name):
        return path
    warnings.warn(f"{job.model}'s hypernetwork predicts {made_for[0]} on {made_for[2]} layers, not the space or "
                  f"layers asked for: starting from zero ({SCRATCH_STEPS} steps unless --steps)", stacklevel=2)
    return None


def check_job(job: PersonalizeJob) -> None:
    """Every setting that can be checked without the model, before it loads."""
    from lowdim_sd.export import FORMATS

    unknown = [fmt for fmt in job.export if fmt not in FORMATS]
    if unknown:
        raise LowdimError(f"unknown --export format '{unknown[0]}'; choose from {', '.join(FORMATS)}")
    if job.rank < 1:
        raise LowdimError(f"--rank must be >= 1, got {job.rank}")
    if job.only_hyper and job.no_hyper:
        raise LowdimError("--only-hyper keeps the prediction and --no-hyper drops it: choose one")
    if job.only_hyper and job.hypernet is None:
        raise LowdimError("--only-hyper needs a hypernetwork (--hypernet CKPT): without a prediction there is "
                          "nothing to keep")
    steps, learning_rate = schedule(job)
    TrainConfig(steps=steps, learning_rate=learning_rate).validate()


def preview_prompts(model_name: str) -> tuple[str, ...]:
    from lowdim.backends import Backend

    entry = get_registry().backends.get(model_name)
    return entry.value.preview_prompts if entry else Backend.preview_prompts


def personalize(job: PersonalizeJob, progress: bool = True) -> PersonalizeResult:
    result = PersonalizeResult(adapter=job.out / "adapter.safetensors")
    job.hypernet = job.hypernet or fitting_default_hypernet(job)
    check_job(job)
    crop = resolve_crop(job.crop, job.model)  # before the model loads: a missing extra fails fast
    with stage(result, "load model"):
        model = load_sd(job.model, job.device, job.dtype)
    with stage(result, "read image"):
        # The same (cropped) picture is the hypernetwork's input, the finetuning target and the preview's.
        reference = load_face_image(job.image, model.resolution, crop, job.crop_margin, job.face_index)
    with stage(result, "hypernetwork"):
        predicted = predict_initial(model, job, reference)
        trainable = initial_trainable(model, job, predicted)
    with stage(result, "fast finetune"):
        steps, learning_rate = schedule(job)
        steps = 0 if job.only_hyper else steps
        trainable.metadata["extra"] = recipe(job, steps, learning_rate, crop)
        config = TrainConfig(steps=steps, learning_rate=learning_rate, token=job.token, seed=job.seed)
        trained = train(model, [Subject(reference[None], job.seed)], trainable, config, out_dir=job.out,
                        progress=progress and steps > 0)
        result.losses, result.adapter = trained.losses, trained.outputs[0]
    if job.export:
        from lowdim_sd.export import export_adapter

        with stage(result, "export"):
            result.exports = [export_adapter(result.adapter, job.out / f"adapter.{fmt}.safetensors", fmt)
                              for fmt in job.export]
    if job.preview:
        with stage(result, "preview"):
            result.preview = render_preview(model, reference, job)
    elif (job.out / "preview.png").is_file():
        warnings.warn(f"{job.out / 'preview.png'} is from an earlier run, not of this adapter", stacklevel=2)
    from lowdim_sd.export import FORMATS

    for stale in (job.out / f"adapter.{fmt}.safetensors" for fmt in FORMATS if fmt not in job.export):
        if stale.is_file():
            warnings.warn(f"{stale} is from an earlier run, not of this adapter", stacklevel=2)
    return result


def recipe(job: PersonalizeJob, steps: int, learning_rate: float, crop: bool) -> dict:
    """What made this adapter, stored in its file: enough to run it again."""
    hypernet = None
    if job.hypernet is not None and not job.no_hyper:
        hypernet = {"file": Path(job.hypernet).name, "sha256": _header_digest(Path(job.hypernet)),
                    "iterations": job.iterations, "bases_seed": job.bases_seed}
    return {"made_by": "lowdim personalize", "image": Path(job.image).name, "hypernet": hypernet,
            "only_hyper": job.only_hyper, "steps": steps, "learning_rate": learning_rate, "rank": job.rank,
            "seed": job.seed, "crop": crop, "crop_margin": job.crop_margin, "face_index": job.face_index}


def _header_digest(path: Path) -> str:
    """16 hex digits of sha256 over the checkpoint's metadata (config, layers, training run and step):
    it tells checkpoints apart without reading gigabytes of weights a second time."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    return hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()[:16]


def render_preview(model: SDModel, reference, job: PersonalizeJob) -> Path:
    from lowdim_sd.generate import GenerateConfig, generate
    from lowdim_sd.grid import save_grid

    prompts = list(preview_prompts(job.model))
    config = GenerateConfig(prompts=prompts, seeds=[job.seed], steps=job.preview_steps, token=job.token)
    images = [to_pil(reference[None])[0]] + [item.image for item in generate(model, config)]
    captions = ["reference"] + prompts
    return save_grid(job.out / "preview.png", images, captions, ncol=len(images))
