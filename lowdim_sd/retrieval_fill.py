"""``train-hypernet`` for the retrieval head: store each training identity's key and θ (no gradient steps).

With ``--set key_dim=N`` the keys are a learned identity embedding (``lowdim.hyper.retrieval_keys``),
trained first on ``--key-pairs``: an identity folder whose sub-folders hold two or more photos of one
person each (``lowdim tinyfaces-identities --renders 2`` writes one). Backbone features come from the
frozen encoder, or from ``--features`` (``lowdim encoder-features`` over the same images) where the
encoder is slow or absent. With ``--key-renders R`` each stored θ is also keyed by R images the model
makes with it (the precompute prompt): a query then finds the θ whose *output* looks like it, not only
the θ whose reference photo did (docs/ladder.md, rung 10b).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim.option_words import either
from lowdim_sd import runs
from lowdim_sd.feature_file import StoredFeatures
from lowdim_sd.hypertrain_io import FeatureCache, MetricsLog, all_targets, run_metadata
from lowdim_sd.hypertrain_losses import evaluate
from lowdim_sd.hypertrain_words import name
from lowdim_sd.weight_dataset import WeightDataset

if TYPE_CHECKING:
    from lowdim.hyper.retrieval import RetrievalHead
    from lowdim_sd.hypertrain import HyperTrainJob, HyperTrainResult
    from lowdim_sd.loading import SDModel

BATCH = 32
RENDER_STEPS = 25  # DDIM steps of each bank render: as the quality benchmark samples


KEY_DIM = 'hyper={"key_dim": ...}'  # the HyperConfig option, as a Python caller gives it


def add_to_hyper(key: str, value: object) -> str:
    """How to set a HyperConfig option this reader's way: ``--set key=value`` or a key of the ``hyper`` dict."""
    return either(f"add --set {key}={value}", f"add {json.dumps(key)}: {json.dumps(value)} to hyper")


def check_retrieval_job(job: HyperTrainJob) -> None:
    """Key options that cannot work together, refused before anything loads."""
    retrieval = job.hyper.get("architecture") == "retrieval"
    if job.key_pairs is not None and not retrieval:
        raise LowdimError(f"{name('key_pairs')} trains the retrieval head's keys: "
                          f"{add_to_hyper('architecture', 'retrieval')}")
    if retrieval and int(job.hyper.get("key_dim") or 0) and job.key_pairs is None:
        raise LowdimError(f"{either('key_dim', KEY_DIM)} > 0 learns the keys from photos of the "
                          f"same people: {either('add --key-pairs FOLDER', 'pass key_pairs=FOLDER')} (one sub-folder "
                          f"of two or more photos per identity)")
    if retrieval and job.key_pairs is not None and not int(job.hyper.get("key_dim") or 0):
        raise LowdimError(f"{name('key_pairs')} trains a learned key: {add_to_hyper('key_dim', 64)} (0 keys by the "
                          f"CLS token)")
    if job.key_renders and not retrieval:
        raise LowdimError(f"{name('key_renders')} keys the retrieval head's bank: "
                          f"{add_to_hyper('architecture', 'retrieval')}")
    if not 0 <= job.key_renders <= 16:
        raise LowdimError(f"{name('key_renders')} must be between 0 and 16, got {job.key_renders}")
    if job.key_steps < 1:
        raise LowdimError(f"{name('key_steps')} must be >= 1, got {job.key_steps}")
    if retrieval:
        warn_about_training_options(job)


# The training loop's options, with the CLI's flags: the retrieval head stores its bank and runs no loop.
LOOP_OPTIONS = {"steps": "--steps", "learning_rate": "--lr", "weight_decay": "--weight-decay",
                "checkpoint_every": "--checkpoint-every", "max_minutes": "--max-minutes"}


def warn_about_training_options(job: HyperTrainJob) -> None:
    import dataclasses
    import warnings

    defaults = {f.name: f.default for f in dataclasses.fields(job) if f.name in LOOP_OPTIONS}
    given = [name(field, flag) for field, flag in LOOP_OPTIONS.items() if getattr(job, field) != defaults[field]]
    if given:
        warnings.warn(f"the retrieval head stores the training identities and runs no training steps: "
                      f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} ignored ({name('key_steps')} sets "
                      f"how long its learned keys train)", stacklevel=3)


def fill_retrieval(job: HyperTrainJob, train_set: WeightDataset, val_set: WeightDataset | None,
                   numbers: dict[str, int], out: Path, progress: bool = True) -> HyperTrainResult:
    """The retrieval head's "training": learn its keys if asked, store every training identity, validate, save."""
    from lowdim.hyper import HyperConfig, build_hypernet, save_hypernet
    from lowdim_sd.hypertrain import HyperTrainResult
    from lowdim_sd.hypertrain_io import encoder_weights_context

    started = time.perf_counter()
    if job.all_images:
        raise LowdimError(f"the retrieval head stores one key per identity: "
                          f"{either('drop --all-images', 'leave all_images out')}")
    config = HyperConfig.from_dict({**job.hyper, "bank_size": len(train_set.names)})
    torch.manual_seed(job.seed)  # a randomly initialised encoder is then the same in every run
    with encoder_weights_context(job):
        # the head config.architecture names, which build_hypernet returns as a plain Module
        net = cast("RetrievalHead", build_hypernet(config, train_set.space, train_set.layers).eval())
    stored = StoredFeatures(job.features, net.encoder) if job.features is not None else None
    extra = {}
    if net.key_projection is not None:  # key_dim > 0, which check_retrieval_job lets through only with --key-pairs
        pairs = cast(Path, job.key_pairs)
        extra = learn_keys(net, Path(pairs), photo_reader(train_set), stored, job.key_steps, job.seed, progress)
    images = (train_set.image(item) for item in range(len(train_set)))
    targets = all_targets(train_set)
    net.fill(backbone_features(net, images, stored, train_set.names), targets)
    if job.key_renders:
        extra.update(add_render_keys(net, job, train_set, progress))
    metrics = out / "metrics.jsonl"
    result = HyperTrainResult(out / "hypernet.safetensors", train_names=train_set.names,
                              val_names=val_set.names if val_set else [], metrics=metrics, filled_bank=True,
                              key_steps=job.key_steps if net.key_projection is not None else 0)
    log = MetricsLog(metrics, True)
    if val_set is not None:
        mean = {layer: {k: v.mean(0) for k, v in p.items()} for layer, p in targets.items()}
        # --features' rows, as the bank's: with them a packaged encoder was built without its weights
        cache = FeatureCache(stored, val_set.image_path)
        log.write({"step": 0, "split": "val", **evaluate(net, None, val_set, job, numbers, cache, mean)})
    # The transformer head's record (phrase, bases, weight folders by name); no loss was trained on: α = β = 0.
    recorded = {**run_metadata(job, train_set.index, net), "alpha": 0.0, "beta": 0.0}
    save_hypernet(result.path, net, {**recorded, "steps": 0, **extra})
    result.seconds = time.perf_counter() - started
    return result


def photo_reader(like: WeightDataset) -> Callable[[Path], Tensor]:
    """Read a photo as ``like`` reads its references: same resolution, cropped to the face alike."""
    from lowdim_sd.face_inputs import load_face_image

    if like.crop:
        return lambda path: load_face_image(path, like.resolution, True, like.crop_margin, like.face_index)
    return lambda path: load_face_image(path, like.resolution, crop=False)


def learn_keys(net: RetrievalHead, people_folder: Path, read_photo: Callable[[Path], Tensor],
               stored: StoredFeatures | None, steps: int, seed: int, progress: bool) -> dict:
    """Train the head's key projection on the people of ``people_folder`` (sub-folders of 2+ photos each)."""
    from lowdim.hyper.retrieval_keys import fit_key_projection
    from lowdim_sd.precompute import discover_identities

    projection = net.key_projection
    if projection is None:
        raise LowdimError(f"this retrieval head keys by the CLS token and has no key projection to train: build it "
                          f"with {either('--set key_dim=64', KEY_DIM.replace('...', '64'))}")
    people = [person for person in discover_identities(people_folder) if len(person.images) >= 2]
    if len(people) < 2:
        raise LowdimError(f"{people_folder}: key training needs two or more identity sub-folders with two or more "
                          f"photos each; found {len(people)}")
    paths = [path for person in people for path in person.images]
    features = backbone_features(net, map(read_photo, paths), stored, [str(p) for p in paths], progress,
                                 "key photos' features")
    identities = list(net.key_input(features).split([len(person.images) for person in people]))
    torch.manual_seed(seed)
    with runs.progress(steps, "key training", enabled=progress) as advance:
        fit = fit_key_projection(projection, identities, steps=steps, seed=seed, progress=advance)
    return {**fit.as_metadata(), "key_pairs": Path(people_folder).resolve().name}  # by name: no local path


def add_render_keys(net: RetrievalHead, job: HyperTrainJob, train_set: WeightDataset, progress: bool) -> dict:
    """Render every stored θ ``job.key_renders`` times with the precompute prompt and add those images' keys."""
    from lowdim_sd.loading import load_sd
    from lowdim_sd.prompt_words import fill

    index = train_set.index
    name = cast(str, job.model)  # train_hypernet sets it (model_to_train) before any step
    model = load_sd(name, "cpu" if job.cpu else "auto", job.dtype, job.model_config)
    prompt = fill(job.prompt or index["config"]["prompt"], job.token or index["config"]["token"])
    features = render_bank_features(net, model, index["layer_set"], int(index["seed"]), prompt, job.key_renders,
                                    job.seed, progress)
    net.add_render_keys(features)
    return {"key_renders": job.key_renders, "key_render_prompt": prompt}


@torch.no_grad()
def render_bank_features(net: RetrievalHead, model: SDModel, layer_set: str, adapter_seed: int, prompt: str,
                         renders: int, seed: int = 0, progress: bool = True) -> Tensor:
    """Backbone features (bank, renders, T, D) of ``renders`` images the model makes with each stored θ."""
    import lowdim
    from lowdim_sd.generate import set_scheduler
    from lowdim_sd.modes import resolve_layers

    set_scheduler(model, "ddim")
    adapters = lowdim.Adapters(model.modules)
    adapters.add("bank", net.space, resolve_layers(layer_set, model.name), seed=adapter_seed)
    rows: list[Tensor] = []
    try:
        with runs.progress(len(net.keys), "rendering the bank", enabled=progress, loss=False) as advance:
            for item in range(len(net.keys)):
                adapters.load_tensors("bank", {layer: {k: v[0] for k, v in params.items()}
                                               for layer, params in net.stored_params(item).items()})
                generators = [torch.Generator().manual_seed(seed + 500 + r) for r in range(renders)]
                images = model.pipe([prompt] * renders, num_inference_steps=RENDER_STEPS, guidance_scale=4.0,
                                    generator=generators, height=model.resolution, width=model.resolution,
                                    output_type="pt").images
                features = net.encoder.features(images.float().cpu().clamp(0, 1) * 2 - 1)
                rows.append(net.encoder.pooled(features) if net.encoder.pool else features[:, :1])
                advance()
    finally:
        adapters.delete("bank")
    return torch.stack(rows)


@torch.no_grad()
def backbone_features(net: RetrievalHead, images: Iterable[Tensor], stored: StoredFeatures | None, names: list[str],
                      progress: bool = False, label: str = "encoder features") -> Tensor:
    """Backbone features (N, T, D) of the images, pooled as the head pools: stored ones, else computed."""
    rows: list[Tensor] = []
    batch: list[Tensor] = []
    with runs.progress(len(names), label, enabled=progress, loss=False) as advance:
        def flush() -> None:
            stack = torch.stack(batch)
            if stored is not None:
                found = stored.get(stack, names[len(rows) * BATCH:][:len(batch)])
            else:
                found = net.encoder.features(stack)
            rows.append((net.encoder.pooled(found) if net.encoder.pool else found[:, :1]).float().cpu())
            batch.clear()

        for image in images:
            batch.append(image)
            if len(batch) == BATCH:
                flush()
            advance()
        if batch:
            flush()
    return torch.cat(rows)
