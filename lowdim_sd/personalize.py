"""``lowdim personalize``: one face image in, a tiny adapter (and a preview grid) out, with stage times.

The pipeline is the paper's phase 2: an initial adapter in the chosen space (the hypernetwork's
prediction once one is given; zero otherwise, the paper's "No Hyper" ablation), frozen, plus a
LoRA of rank r > 1 trained for a few steps (rank-relaxed fast finetuning, §4.3).

Read top-down: ``resolve_run`` (``lowdim_sd.personalize_resolve``) turns the job (what was asked) into a
frozen ``PersonalizeRun`` (what it targets) before anything loads; ``personalize`` then loads, predicts,
finetunes, exports and previews with it. Nothing changes the job on the way.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import lowdim
from lowdim.errors import LowdimError
from lowdim.hyper.encoder import features_computed_once
from lowdim_sd import notebook_views, runs, status_line
from lowdim_sd import personalize_stages as stages
from lowdim_sd.face_inputs import load_face_image
from lowdim_sd.given_model import check_given_model, handed_back
from lowdim_sd.images import load_image
from lowdim_sd.job_fields import (
    Converted,
    OptionalPathField,
    PathField,
    WordsField,
    job_dataclass,
    path_field,
    words_field,
)
from lowdim_sd.loading import SDModel, canonical_model, load_sd
from lowdim_sd.modes import ADAPTER, AdapterTrainable, relaxed_trainable, resolve_layers
from lowdim_sd.personalize_checks import check_face_found, check_inputs, named
from lowdim_sd.personalize_hypernet import predicts_layers, warn_about_a_side_read_after_the_load
from lowdim_sd.personalize_recipe import recipe

# PersonalizeRun, resolve_run and described_run are used here and re-exported (preview and personalize_recipe import
# PersonalizeRun from here, tests resolve_run); resolve_describer is only re-exported
from lowdim_sd.personalize_resolve import PersonalizeRun, described_run, resolve_run
from lowdim_sd.personalize_resolve import resolve_describer as resolve_describer
from lowdim_sd.personalize_stages import after_the_adapter, clear_earlier, stage, warn_earlier, written_files
from lowdim_sd.preview import preview_unless_out_of_memory
from lowdim_sd.prompt_words import with_looks
from lowdim_sd.train import Subject, TrainConfig, train
from lowdim_sd.train_settings import as_path

if TYPE_CHECKING:
    from PIL import Image

    from lowdim_sd.faces import FoundFaces

__all__ = ["PersonalizeJob", "PersonalizeResult", "personalize"]  # what help() shows; the stages are internal


def photo_path(value: object, owner: str, name: str) -> Path:
    """A file, never a decoded picture: the run opens it as the CLI does (EXIF turn, face crop) and records its
    name in the adapter, and a picture taken by Python alone would be a second path through every stage."""
    if not isinstance(value, (str, os.PathLike)):
        raise LowdimError(f"{owner}: {name}= takes the path to a photo file (a str or Path), got a "
                          f"{type(value).__name__}; save the picture first, e.g. picture.save('face.png')")
    return as_path(value, owner, name)


@job_dataclass(frozen=True)
class PersonalizeJob:
    """What was asked, one field per CLI option; frozen: a run reads it, never changes it."""

    model: str
    image: PathField = Converted(convert=photo_path)  # a str is as good, as for every path field (job_fields)
    space: str = "lidb"
    space_options: dict = field(default_factory=dict)
    layers: str | None = None
    steps: int | None = None  # default: 40 with a hypernetwork (the paper), SCRATCH_STEPS without
    rank: int = 4
    learning_rate: float | None = None  # default: the model's finetune_lr after a prediction, else FINETUNE_LR
    batch_size: int | None = None  # images per finetune step; default: the model's finetune_batch after a prediction
    keep_styles: float = 0.0  # > 0: weight of lowdim_sd.style_delta's loss over the preview's style prompts
    describe: bool | None = None  # name the looks the backend's describer reads in the prompts; None: if it has one
    token: str | None = None  # what [V] stands for; None: the hypernetwork's (its precompute's), else "sks"
    seed: int = 0  # the LoRA's init, the training noise and the preview
    # Seed of the initial adapter's frozen bases (LiDB's A_aux, B_aux). None: ``seed``. A hypernetwork's
    # prediction overrides it with the seed of the weights it learned from, since it lives in those bases.
    bases_seed: int | None = None
    out: PathField = path_field(default=Path("personalized"))
    export: WordsField = words_field(default=())  # one format alone is one, not its letters
    preview: bool = True
    preview_steps: int = 30
    preview_draws: tuple[str, ...] | None = None  # how each preview row draws the adapter (parse_draw); None: model's
    device: str = "auto"
    dtype: str = "auto"
    model_config: str | None = None  # a single-file model offline: a diffusers folder of its architecture
    resolution: int | None = None  # image side for training and preview (None: the model's)
    save_dtype: str = "fp16"  # tensors of the adapter file: fp16 halves it and loses nothing that matters
    hypernet: OptionalPathField = path_field(default=None)  # a trained hypernetwork (phase 1)
    no_hyper: bool = False  # ablation: fast finetune from zero even when a hypernetwork is given
    only_hyper: bool = False  # ablation: the prediction alone, no finetuning
    iterations: int | None = None  # hypernetwork refinement steps (default: the checkpoint's)
    crop: bool | None = None  # crop the image to the face; None: the backend's default (see face_inputs)
    crop_margin: float = 0.6  # room around the face, as a fraction of its width on each side
    face_index: int | None = None  # which face when there are several (0: the largest)
    overwrite: bool = False  # replace the files an earlier run wrote to ``out`` (else refused)
    gradient_checkpointing: bool = False  # at 512 px it saves nothing measurable on a GPU (docs/benchmarks.md)
    cuda_graphs: bool = False  # replay the finetune's models from CUDA graphs (lowdim_sd.step_graphs)


@dataclass
class PersonalizeResult:
    """What a personalize run wrote and measured.

    adapter: the adapter file (``out/adapter.safetensors``). exports: the files ``export`` asked for, in its
    order. preview: ``out/preview.png``, or None (``preview=False``, or no GPU memory left for it: warned).
    stages: seconds per stage, in run order ('load model' is absent when ``model=`` was given). losses: the fast
    finetune's loss per step ([] with ``only_hyper``). gallery: the preview's cells as (caption, PIL image).
    looks: what the describer read, as the words put after "[V] <noun>" (" with ginger long hair"); '' without
    one. prompt: the phrase the adapter answers to, its finetune's prompt ("a [V] face" unless the hypernetwork
    was trained with another); ``subject_prompt()`` adds the looks.
    """

    adapter: Path
    exports: list[Path] = field(default_factory=list)
    preview: Path | None = None
    stages: dict[str, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    gallery: list[tuple[str, Image.Image]] = field(default_factory=list)  # (caption, PIL image): the preview's cells
    looks: str = ""  # what the describer read, as the words put after "[V] <noun>" (" with ginger long hair")
    prompt: str = TrainConfig.prompt  # the phrase the adapter answers to: its finetune's prompt

    def subject_prompt(self, after: str = "") -> str:
        """The adapter's phrase, then ``after``, with the looks after [V]'s noun: a prompt that draws the subject
        (drawn apart, its UNet part needs the looks in words: the text encoder's part no longer says them)."""
        return with_looks(self.prompt + after, self.looks)

    def __repr__(self) -> str:  # a notebook's line: the files and the time, not every loss and PIL image
        return notebook_views.result_repr(self)

    def _repr_html_(self) -> str:  # a notebook shows the preview's cells, from the gallery held (no file read)
        return notebook_views.result_html(self)


def predict_initial(model: SDModel, run: PersonalizeRun, reference: torch.Tensor) -> dict | None:
    """The hypernetwork's prediction for the reference image, checked against this model and target."""
    if run.hypernet is None:
        return None
    from lowdim.hyper import load_hypernet
    from lowdim.sizing import layer_specs

    # A network made for a wider layer set (checked by predicts_layers) is loaded for its own set, and its
    # prediction cut down to the layers asked for; any other mismatch is load_hypernet's one-line error.
    own = (resolve_layers(run.hypernet.made_for[2], run.hypernet.metadata["model"])
           if predicts_layers(run.hypernet, run.layers) else run.layers)
    net = load_hypernet(run.hypernet, model=canonical_model(run.job.model), space=run.space,
                        layer_set=own.name, layers=layer_specs(model.modules, own))
    net = net.to(model.device)  # on the model's GPU, not the CPU it was read to: seconds on SD1.5's ViT-H
    image = reference[None].to(model.device)  # the encoder resizes (and normalises) it as it was trained to
    with torch.no_grad():
        predicted = net.eval()(image, iterations=run.job.iterations)
    if own.name == run.layers.name:
        return predicted
    wanted = {spec.name for spec in layer_specs(model.modules, run.layers)}
    unpredicted = sorted(wanted - predicted.keys())
    if unpredicted:
        raise LowdimError(f"{run.hypernet.path}: the hypernetwork predicts no layer {unpredicted[0]} (it was made "
                          f"for {own.name}); leave that layer out of {named('layers')}")
    return {name: params for name, params in predicted.items() if name in wanted}


def initial_trainable(model: SDModel, run: PersonalizeRun, predicted: dict | None) -> AdapterTrainable:
    """The adapter to finetune: the initial one (predicted, or zero) frozen and merged, plus LoRA rank r.

    With ``run.only_hyper`` it is the predicted adapter alone, in its own space.
    """
    job = run.job
    adapters = lowdim.Adapters(model.modules)
    metadata = {"base_model": model.base_model_id, "token": job.token}
    name = ADAPTER if run.only_hyper else "initial"
    adapters.add(name, run.space, run.layers, seed=run.bases_seed)
    if predicted is not None:
        adapters.load_tensors(name, {k: {p: v[0] for p, v in t.items()} for k, t in predicted.items()})
    if run.only_hyper:
        return AdapterTrainable(model, ADAPTER, ["adapter"], metadata, save_dtype=job.save_dtype)
    # The paper adds the prediction to the weights (§4.3): merge_frozen; the LoRA's init comes from --seed.
    # --keep-styles switches the whole adapter off for the base model's predictions, so nothing is merged.
    return relaxed_trainable(model, name, rank=job.rank, seed=run.seed, metadata=metadata,
                             save_dtype=job.save_dtype, merge_frozen=not job.keep_styles)


def personalize(job: PersonalizeJob, progress: bool = True, model: SDModel | None = None) -> PersonalizeResult:
    """One photo to an adapter, as ``lowdim personalize`` does: load ``job.model``, crop the face, predict LiDB
    weights with the hypernetwork, merge them, finetune a rank-relaxed LoRA, write ``job.out/adapter.safetensors``
    (and the exports and preview asked for). Returns the files written, each stage's seconds and the preview's
    pictures; a user mistake raises LowdimError in one line, a stop KeyboardInterrupt saying what was kept.

    A ``model`` given (``load_sd``'s, or ``SDModel.from_pipeline(pipe)``) is used instead of a load: ``job.model``
    must name it, and ``job.device``/``job.dtype``, when not 'auto', must be its own. It is frozen for the run
    and handed back as it came, however the run ends: no adapter left, the merged weights copied back, every
    ``requires_grad`` and train mode as it was, no ``.grad``."""
    if model is not None:  # before the output folder is made
        check_given_model(model, job, "personalize(model=...)")
    # bad input: no folder; the photo decoded once, for the face check and the crop. A given model's name is a label
    # (a pipeline's name_or_path, maybe a folder gone since), so only a model to load has its -m word checked.
    photo = check_inputs(job, model_to_load=model is None)
    return _personalize_into(job, progress, model, photo)


@runs.one_run_per_folder(lambda job: job.out, written_files, stages.refuse_other_runs)
def _personalize_into(job: PersonalizeJob, progress: bool, given: SDModel | None,
                      photo: Image.Image) -> PersonalizeResult:
    # The describer and the hypernetwork are built from torch's global generator (seeded in-run, so the run is
    # deterministic); a Python caller's own stream of random numbers is put back after the run.
    with torch.random.fork_rng(devices=[]), given.one_run() if given is not None else contextlib.nullcontext(), \
            status_line.shown_for(progress):  # a terminal's spinner through the waits before the first bar
        run = resolve_run(job)
        found = check_face_found(job, run.crop, photo)  # before the model loads
        result = PersonalizeResult(adapter=job.out / "adapter.safetensors", prompt=run.prompt)
        if given is None:
            with stage(result, "load model"):
                model = load_sd(job.model, job.device, job.dtype, job.model_config)
            return _personalize(job, run, result, model, progress, photo, found)
        with handed_back(given, run.layers):
            return _personalize(job, run, result, given, progress, photo, found)


def _personalize(job: PersonalizeJob, run: PersonalizeRun, result: PersonalizeResult, model: SDModel,
                 progress: bool, photo: Image.Image, found: FoundFaces | None) -> PersonalizeResult:
    """The run's stages after the model is there: ``job`` as asked (``run.job`` has its token resolved); ``photo``:
    the picture as the check decoded it; ``found``: the check's faces in it, which the crop reads."""
    resolution = job.resolution or model.resolution
    warn_about_a_side_read_after_the_load(run.hypernet, resolution)  # resolve_run's, where the config was not at hand
    stages.warn_other_adapters(job)  # past the load: a run refused for its model or photo says only its own line
    with stage(result, "read image"):
        # The same (cropped) picture is the hypernetwork's input, the finetuning target and the preview's.
        reference = read_reference(job, run.crop, resolution, photo, found)
    # The describer and the hypernetwork read one frozen backbone (TinyFaces': DINOv2) the same way: it runs once.
    with features_computed_once():
        if run.describer is not None:
            with stage(result, "describe"):
                result.looks = run.describer(reference)
                run = described_run(run, result.looks)
        with stage(result, "hypernetwork" if run.hypernet is not None else "initial adapter"):  # --no-hyper: zero
            predicted = predict_initial(model, run, reference)
            trainable = initial_trainable(model, run, predicted)
    if run.unfit_note:
        warnings.warn(run.unfit_note, stacklevel=3)
    # --only-hyper trains nothing: its stage only writes the prediction (train with 0 steps saves it).
    with stage(result, "fast finetune" if not run.only_hyper else "save adapter"):
        trainable.metadata["extra"] = recipe(run)
        config = finetune_config(run)
        trained = train(model, [Subject(reference[None], run.seed)], trainable, config, out_dir=job.out,
                        progress=progress and run.steps > 0, continue_with=None)  # no --resume: rerun
        result.losses, result.adapter = trained.losses, trained.outputs[0]
    cleared = clear_earlier(job)  # from here the earlier run's preview and exports would show another adapter
    stages.remove_other_runs(job)  # an earlier --full run's model would pass for this run's output
    if job.export:
        from lowdim_sd.export import export_adapter
        from lowdim_sd.run_outputs import ADAPTER, export_path

        with after_the_adapter(result, "export", job, cleared):
            result.exports = [export_adapter(result.adapter, export_path(job.out / ADAPTER, fmt), fmt)
                              for fmt in job.export]
    if job.preview:
        with after_the_adapter(result, "preview", job, cleared):
            result.preview, result.gallery = preview_unless_out_of_memory(model, reference, run, resolution,
                                                                          result.adapter)
    if not (job.export or job.preview):
        stages.take_up_a_held_stop(result, job, cleared)
    warn_earlier(job, cleared)
    return result


def read_reference(job: PersonalizeJob, crop: bool, resolution: int, photo: Image.Image,
                   found: FoundFaces | None) -> torch.Tensor:
    """The photo as the run trains on it, from what the checks decoded of it (the file is not decoded again):
    cropped from the faces ``found`` in it, or (no crop) its centre square."""
    if not crop:
        return load_image(job.image, resolution, picture=photo)
    return load_face_image(job.image, resolution, crop, job.crop_margin, job.face_index, found=found)


def finetune_config(run: PersonalizeRun) -> TrainConfig:
    """The fast finetune's settings, one place for personalize and the bench rows that repeat it."""
    job = run.job
    return TrainConfig(steps=run.steps, learning_rate=run.learning_rate, batch_size=run.batch_size,
                       prompt=run.prompt, token=job.token, seed=run.seed,
                       gradient_checkpointing=job.gradient_checkpointing, keep_styles=job.keep_styles,
                       style_prompts=run.preview_prompts, cuda_graphs=job.cuda_graphs)
