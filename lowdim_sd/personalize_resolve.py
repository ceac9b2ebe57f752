"""A personalize job (what was asked) resolved into the ``PersonalizeRun`` it targets, before anything loads.

``resolve_run`` settles the backend, space, layer set, hypernetwork, seeds, finetune schedule, crop and preview
once, refusing a job no run can do in one line; ``lowdim_sd.personalize`` and the bench's hypernetwork rows
(``lowdim_sd.bench.methods``) then run with it. Nothing changes the job on the way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

import lowdim
from lowdim.errors import LowdimError
from lowdim.hyper.storage import HypernetFile
from lowdim.injection import LayerSet
from lowdim.option_words import either
from lowdim.spaces.base import Space
from lowdim_sd import defaults
from lowdim_sd.draw_parts import DrawParts, parse_draw
from lowdim_sd.face_inputs import resolve_crop
from lowdim_sd.modes import resolve_layers
from lowdim_sd.personalize_checks import check_job, named, switch, with_training_phrase
from lowdim_sd.personalize_hypernet import resolve_hypernet
from lowdim_sd.prompt_words import with_looks
from lowdim_sd.registered_models import registered_entry
from lowdim_sd.train import TrainConfig

if TYPE_CHECKING:
    from lowdim_sd.personalize import PersonalizeJob

SCRATCH_STEPS = defaults.SCRATCH_STEPS  # from zero, 40 steps barely move the identity (see docs/sd.md)


@dataclass(frozen=True)
class PersonalizeRun:
    """What a personalize run targets, resolved once from the job before the model loads."""

    job: PersonalizeJob
    backend: Any  # the registered backend of --model; None for a path or hub id
    space: Space  # of the initial adapter
    layers: LayerSet
    hypernet: HypernetFile | None  # the file the prediction comes from; None: no prediction
    seed: int
    bases_seed: int  # of the initial adapter's frozen bases
    steps: int  # fast-finetuning steps actually run (0 with --only-hyper)
    learning_rate: float
    batch_size: int
    crop: bool
    preview_prompts: tuple[str, ...]
    describer: Callable[[torch.Tensor], str] | None = None  # the backend's reader of looks, when used
    preview_draws: tuple[tuple[float, DrawParts], ...] = ((1.0, DrawParts()),)  # (scale, parts) per row
    looks: str = ""  # what it read from the reference, once read (``described_run``)
    unfit_note: str = ""  # why the backend's hypernetwork sits this run out, warned once the layers are found
    prompt: str = TrainConfig.prompt  # of the finetune: the hypernetwork's training phrase when it has one
    only_hyper: bool = False  # the prediction alone is the adapter: --only-hyper, or --steps 0 after a prediction


def resolve_run(job: PersonalizeJob) -> PersonalizeRun:
    """The run's targets, resolved once: backend, space, layer set, hypernetwork, seeds, schedule, crop."""
    from lowdim_sd.plugin import SDBackend

    check_job(job)
    entry = registered_entry(job.model)
    backend = entry.value if entry else None
    space, layers = lowdim.get_space(job.space, job.space_options), resolve_layers(job.layers, job.model)
    refuse_token_space(job, space)
    in_play, hypernet, unfit_note = resolve_hypernet(job, backend, space, layers)
    refuse_hypernet_options_unused(job, in_play, hypernet)
    steps, batch_size, learning_rate = finetune_schedule(job, backend, in_play)
    refuse_nothing_to_draw(job, steps, hypernet)
    TrainConfig(steps=steps, learning_rate=learning_rate, batch_size=batch_size,
                keep_styles=job.keep_styles).validate("PersonalizeJob")
    job, prompt = with_training_phrase(job, hypernet)
    crop = resolve_crop(job.crop, job.model)  # before the model loads: a missing extra fails fast
    prompts = tuple(getattr(backend, "preview_prompts", SDBackend.preview_prompts))  # a path: SD1.x
    draws = job.preview_draws or tuple(getattr(backend, "preview_draws", SDBackend.preview_draws))
    # 0 steps after a prediction trains nothing: the file is --only-hyper's, not the prediction plus a zero LoRA.
    only_hyper = job.only_hyper or steps == 0
    return PersonalizeRun(job, backend, space, layers, hypernet, job.seed, resolve_bases_seed(job, hypernet),
                          0 if only_hyper else steps, learning_rate, batch_size, crop, prompts,
                          resolve_describer(job, backend),
                          preview_draws=tuple(parse_draw(text) for text in draws), unfit_note=unfit_note,
                          prompt=prompt, only_hyper=only_hyper)


def refuse_token_space(job: PersonalizeJob, space: Space) -> None:
    """Refuse a space of token embeddings: personalize relaxes a weight space's rank."""
    if getattr(space, "learns_tokens", False):
        space_given = either(f"--space {job.space}", f"PersonalizeJob(space={job.space!r})")
        train_it = either(f"`lowdim train --space {job.space}`", f"run_train(TrainJob(space={job.space!r}))")
        raise LowdimError(f"{space_given} learns token embeddings, not weights: personalize relaxes a weight "
                          f"space's rank (lidb, lora, ...); train an embedding with {train_it}")


def refuse_hypernet_options_unused(job: PersonalizeJob, in_play: bool, hypernet: HypernetFile | None) -> None:
    """Refuse --only-hyper and --iterations where no hypernetwork's prediction takes part."""
    if job.only_hyper and not in_play:
        raise LowdimError(f"{switch('only_hyper')} needs a hypernetwork "
                          f"({either('--hypernet CKPT', 'PersonalizeJob(hypernet=CKPT)')}): without a prediction "
                          f"there is nothing to keep")
    if job.iterations is not None and hypernet is None:
        why = f"{switch('no_hyper')} drops its prediction" if job.no_hyper else "no hypernetwork predicts here"
        raise LowdimError(f"{named('iterations')} sets the hypernetwork's refinement passes, and {why}")


def refuse_nothing_to_draw(job: PersonalizeJob, steps: int, hypernet: HypernetFile | None) -> None:
    """Refuse a zero start trained 0 steps: it draws nothing, so it is refused, not written."""
    if steps == 0 and hypernet is None:
        why = f"{switch('no_hyper')} drops the prediction" if job.no_hyper else "no hypernetwork predicts here"
        raise LowdimError(f"{named('steps')} 0 trains nothing and {why}, so the adapter would draw nothing; give "
                          f"{named('steps')} 1 or more, or a prediction to keep "
                          f"({either('--hypernet CKPT', 'PersonalizeJob(hypernet=CKPT)')})")


def resolve_bases_seed(job: PersonalizeJob, hypernet: HypernetFile | None) -> int:
    """The seed of the initial adapter's frozen bases: a prediction lives in those its training weights had."""
    if hypernet is not None:
        return int(hypernet.metadata.get("adapter_seed", job.seed))
    return job.seed if job.bases_seed is None else job.bases_seed


def resolve_describer(job: PersonalizeJob, backend: Any) -> Callable[[torch.Tensor], str] | None:
    describer = getattr(backend, "describe_subject", None)
    if job.describe and describer is None:
        raise LowdimError(f"{either('--describe', 'PersonalizeJob(describe=True)')}: model '{job.model}' has no "
                          f"describer of looks; {either('leave --describe out', 'leave describe= unset')}")
    return describer if job.describe is not False else None


def described_run(run: PersonalizeRun, looks: str) -> PersonalizeRun:
    """The run with the looks in its preview prompts, which are also --keep-styles' style prompts."""
    return replace(run, looks=looks, preview_prompts=tuple(with_looks(p, looks) for p in run.preview_prompts))


def finetune_schedule(job: PersonalizeJob, backend: Any, in_play: bool) -> tuple[int, int, float]:
    """(steps, images per step, learning rate): what was asked, else the model's recipe for the fast finetune
    after a prediction, else the from-zero one. --no-hyper keeps the prediction's recipe: the paper's ablation."""
    from lowdim_sd.plugin import SDBackend

    recipe = backend if (in_play or job.no_hyper) and backend is not None else SDBackend
    steps = job.steps if job.steps is not None else (defaults.FINETUNE_STEPS if in_play else SCRATCH_STEPS)
    batch_size = job.batch_size
    if batch_size is None:  # 0 stays: TrainConfig.validate names it
        batch_size = getattr(recipe, "finetune_batch", defaults.FINETUNE_BATCH)
    learning_rate = job.learning_rate  # 0 stays: TrainConfig.validate names it
    if learning_rate is None:
        learning_rate = getattr(recipe, "finetune_lr", defaults.FINETUNE_LR)
    return steps, batch_size, learning_rate
