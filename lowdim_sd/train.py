"""One training engine for every mode: full DreamBooth, LoRA, LiDB, rank-relaxed, any plugin space.

What trains is a ``Trainable`` (see ``lowdim_sd.modes``); the engine only knows the denoising loss.
Randomness is drawn from generators seeded by (subject seed, step, micro-step), never from a
running stream, so a resumed run sees exactly the data an uninterrupted one would, and a subject
trained in a batch of K sees exactly what it would see trained alone (adapter dropout's masks aside: they are
seeded per step too, but for the whole batch at once). Those draws and the step's loss are ``lowdim_sd.train_loss``'s.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, cast

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim.option_words import Wording, either
from lowdim_sd import checkpoints, runs, stopping
from lowdim_sd.checkpoint_settings import inputs_digest
from lowdim_sd.divergence import TrainingDiverged, divergence_hints, stop_if_diverged
from lowdim_sd.loading import SDModel
from lowdim_sd.optim import make_optimizer
from lowdim_sd.step_graphs import StepModels, recomputes_layers, step_models
from lowdim_sd.train_job_words import resume_differences
from lowdim_sd.train_loss import clip_per_subject, denoising_losses, dropout_draws, drops_inputs
from lowdim_sd.train_settings import (  # this module's API since before they moved (__all__)
    IDENTIFIER,
    OPTIMIZERS,
    Subject,
    TrainConfig,
    TrainResult,
    check_subjects,
    config_token,
    fill_prompt,
    refuse_inference_mode,
    with_defaults,
)

# The engine, and the names imported above that are this module's API too (a checker's strict mode exports an
# imported name only when listed here); what help() shows.
__all__ = ["IDENTIFIER", "MIXED_PRECISION", "OPTIMIZERS", "RESUMABLE", "Subject", "TrainConfig", "TrainResult",
           "Trainable", "TrainingDiverged", "check_precision", "clip_per_subject", "config_token", "denoising_losses",
           "divergence_hints", "fill_prompt", "inputs_of", "make_optimizer", "prompt_ids", "refuse_inference_mode",
           "run_settings", "stop_if_diverged", "train", "with_defaults"]

MIXED_PRECISION = runs.MIXED_PRECISION


class Trainable(Protocol):
    @property
    def parameters(self) -> Sequence[Tensor]: ...  # read only: a list of Parameters fits

    num_subjects: int  # > 1 means every parameter has a leading subject dimension

    def state(self) -> dict[str, Tensor]: ...

    def load_state(self, tensors: dict[str, Tensor]) -> None: ...

    def save(self, out_dir: Path) -> list[Path]: ...


def train(model: SDModel, subjects: list[Subject], trainable: Trainable, config: TrainConfig,
          out_dir: Path | None = None, resume: bool = False, progress: bool = True,
          continue_with: str | Wording | None = runs.RESUME) -> TrainResult:
    """Optimise ``trainable`` on the subjects' images; checkpoints and outputs go to ``out_dir``.

    ``continue_with`` says how a stopped run goes on (default: --resume); None where nothing can resume
    a checkpoint, so a stop keeps none.
    """
    config, models, optimizer = _prepared(model, subjects, trainable, config)
    result, settings = TrainResult(), run_settings(config, trainable)
    if out_dir is not None:
        result.start_step = _start_step(model, subjects, trainable, optimizer, config, Path(out_dir), resume, settings)
        if resume and result.start_step == config.steps and checkpoints.says_finished(Path(out_dir), config.steps):
            return result  # its files stand as they are: nothing written, no output to name

    def checkpoint(at: int, keep: int = config.keep_checkpoints) -> Path:
        # a Path: called only where out_dir is set (a run without one keeps no checkpoint)
        return checkpoints.save(cast(Path, out_dir), at, trainable, optimizer, keep, settings)

    input_ids = prompt_ids(model, config)
    styles = _style_term(model, subjects, trainable, config)
    _set_train_mode(model, config.gradient_checkpointing)
    steps = _Steps(model, subjects, trainable, optimizer, config, models, input_ids, styles, drops_inputs(model),
                   runs.grad_scaler(model.device, config.mixed_precision))
    started = time.perf_counter()
    done = _step_loop(steps, result, out_dir, checkpoint, progress, continue_with)
    result.seconds = time.perf_counter() - started
    if out_dir is not None:
        result.outputs = _save_outputs(trainable, Path(out_dir), done, lambda: checkpoint(done), continue_with)
        if continue_with is not None:  # else nothing resumes a checkpoint of it
            _keep_end(Path(out_dir), done, result, steps, settings)
    return result


def _prepared(model: SDModel, subjects: list[Subject], trainable: Trainable,
              config: TrainConfig) -> tuple[TrainConfig, StepModels, torch.optim.Optimizer]:
    """The run's config with its defaults filled in, once every refusal that needs no file is made (before a
    resume reads its checkpoint), with the models a step runs and the optimizer."""
    refuse_inference_mode()
    config = with_defaults(config)
    config.validate()
    check_subjects(subjects, model.pipe.vae_scale_factor)
    check_precision(model, config, trainable)
    models = step_models(model, config.cuda_graphs, config.mixed_precision, config.gradient_checkpointing)
    if len(subjects) != trainable.num_subjects:
        raise LowdimError(f"{len(subjects)} subjects given for {trainable.num_subjects} adapters")
    return config, models, make_optimizer(trainable.parameters, config)


@dataclasses.dataclass
class _Steps:
    """What every step of one run takes besides its number, made once before the first."""

    model: SDModel
    subjects: list[Subject]
    trainable: Trainable
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    models: StepModels
    input_ids: Tensor
    styles: object  # the --keep-styles term, or None
    dropping: bool
    scaler: torch.amp.GradScaler

    def loss(self, step: int) -> float:
        """Step ``step``'s loss, its gradients left for ``update`` (``_one_step``, looked up at each step: a test
        replaces it)."""
        return _one_step(self.model, self.subjects, self.trainable, self.optimizer, self.config, step, self.input_ids,
                         self.scaler, self.styles, self.models, dropping=self.dropping)

    def update(self) -> None:
        self.scaler.step(self.optimizer)  # a plain optimizer.step() unless fp16 autocast on a GPU
        self.scaler.update()


def _step_loop(steps: _Steps, result: TrainResult, out_dir: Path | None, checkpoint: Callable[..., Path],
               progress: bool, continue_with: str | Wording | None) -> int:
    """Run the steps from ``result.start_step`` on, each loss into ``result``, checkpoints as the config says; the
    steps whose update is applied, what a stop's checkpoint holds. A stop (Ctrl-C, out of memory) keeps what it can
    and is raised again with its note; the model is back in inference mode however the loop ends."""
    config, trainable = steps.config, steps.trainable
    hints = divergence_hints(steps.model, config)
    done, updating = result.start_step, False
    with runs.progress(config.steps, start=result.start_step, enabled=progress) as advance:
        try:
            for step in range(result.start_step, config.steps):
                stopping.check()  # a signal's stop, if its KeyboardInterrupt was swallowed
                loss = steps.loss(step)
                stop_if_diverged(loss, step, trainable, out_dir, checkpoint, steps.scaler.is_enabled(), hints)
                with stopping.held():  # a signal now is taken up at the next step's check, with a checkpoint
                    updating = True
                    steps.update()
                    done, updating = step + 1, False  # counted here: a stop from now on keeps this step
                result.losses.append(loss)
                advance(loss)
                if out_dir is not None and config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
                    checkpoint(step + 1)
        except (KeyboardInterrupt, torch.OutOfMemoryError) as stop:
            if out_dir is None:
                raise  # nothing of this run is the engine's to keep: the caller says what it kept
            runs.reraise(stop, runs.stop_note(stop, done, updating, lambda: checkpoint(done), continue_with,
                                              last=checkpoints.latest(out_dir)))
        finally:
            _set_eval_mode(steps.model)
    return done


def _keep_end(out_dir: Path, done: int, result: TrainResult, steps: _Steps, settings: dict) -> None:
    """Keep the finished run's end for a later resume (``checkpoints.keep_the_end``), told whether this run
    already wrote or read a checkpoint of step ``done``."""
    every, start = steps.config.checkpoint_every, result.start_step
    written = bool(every) and done % every == 0 and done > start or done == start > 0
    checkpoints.keep_the_end(out_dir, done, steps.trainable, steps.optimizer, steps.config, settings, result.outputs,
                             written)


def _save_outputs(trainable: Trainable, out_dir: Path, done: int, checkpoint: Callable[[], Path],
                  continue_with: str | Wording | None) -> list[Path]:
    """The trained files, kept whatever stop comes while they are written.

    The script's signals wait for the save to end (``stopping.held``), and the caller takes the stop up then:
    finishing a save is the quickest way to keep the run, even a multi-GB --full model on a slow disk, whose
    checkpoint would hold AdamW's two moments beside the weights, three times the bytes. A KeyboardInterrupt
    raised some other way (a notebook's Ctrl-C) lands at once: the last step is then kept as a checkpoint.
    """
    try:
        with stopping.held():
            return trainable.save(out_dir)
    except KeyboardInterrupt as stop:
        runs.reraise(stop, runs.stop_note(stop, done, False, checkpoint, continue_with,
                                          last=checkpoints.latest(out_dir)))


def _start_step(model: SDModel, subjects: list[Subject], trainable: Trainable, optimizer: torch.optim.Optimizer,
                config: TrainConfig, out_dir: Path, resume: bool, settings: dict) -> int:
    """The step a run into ``out_dir`` starts at (a checkpoint's, with ``resume``), once ``settings`` hold
    the digest of its inputs: taken before a restore changes the weights full DreamBooth trains."""
    settings["inputs"] = inputs_of(model, subjects, trainable)
    runs.check_space(out_dir, 4 * sum(p.numel() * p.element_size() for p in trainable.parameters))
    if not resume:
        return 0
    if checkpoints.latest(out_dir) is None:  # a mistyped --out would otherwise start over without a word
        warnings.warn(f"{either('--resume', 'resume=True')}: {out_dir} holds no checkpoint, so the run starts from "
                      f"step 0", stacklevel=3)
    # Under `lowdim train` a refusal names the flags the user typed; from Python, the fields they set.
    worded = resume_differences
    start = checkpoints.restore(out_dir, trainable, optimizer, settings, worded)
    if start > config.steps:
        raise LowdimError(f"{out_dir}: its checkpoint is at step {start}, past "
                          f"{either(f'--steps {config.steps}', f'steps={config.steps}')}")
    return start


def inputs_of(model: SDModel, subjects: list[Subject], trainable: Trainable) -> dict:
    """What a run trains on, as a resume compares it: each subject's pictures and seed, the base model's weights."""
    names = getattr(trainable, "subject_names", None) or [str(n) for n in range(len(subjects))]
    return inputs_digest(model, subjects, names)


def prompt_ids(model: SDModel, config: TrainConfig) -> Tensor:
    """The training prompt with [V] filled in, as the text encoder's padded input ids (1, max length)."""
    prompt = fill_prompt(config.prompt, config.token)
    return model.pipe.tokenizer(prompt, padding="max_length", truncation=True, return_tensors="pt",
                                max_length=model.pipe.tokenizer.model_max_length).input_ids


# Options a resumed run may change: how long it runs and how it checkpoints, not what it computes (gradient
# checkpointing recomputes activations to the same step: the out-of-memory hint offers it to a resume).
RESUMABLE = ("steps", "checkpoint_every", "keep_checkpoints", "cuda_graphs", "gradient_checkpointing")


def run_settings(config: TrainConfig, trainable: Trainable) -> dict:
    """What a checkpoint records so that only the same run resumes from it."""
    options = {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUMABLE}
    if options["optimizer"] == "adamw":  # the default is left out, so checkpoints made before it existed resume
        del options["optimizer"]
    if not options["keep_styles"]:  # likewise --keep-styles when off
        del options["keep_styles"], options["style_prompts"]
    else:
        options["style_prompts"] = list(options["style_prompts"])  # as JSON gives it back
    signature = getattr(trainable, "signature", None)
    return {**options, "trainable": signature() if signature else {}}


def check_precision(model: SDModel, config: TrainConfig, trainable: Trainable) -> None:
    """Combinations that fail halfway or silently train nothing, refused up front."""
    half = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(model.dtype)
    if half and getattr(trainable, "trains_model_weights", False):
        raise LowdimError(f"full DreamBooth updates the model's own weights, which AdamW cannot do in {half} "
                          f"(updates vanish or overflow): load it with --dtype fp32, with --mixed-precision for speed")
    if half and config.mixed_precision not in ("no", half):
        raise LowdimError(f"--mixed-precision {config.mixed_precision} with a {half} model: use "
                          f"--mixed-precision no (the model already runs in {half}) or --dtype fp32")


def _style_term(model, subjects, trainable, config: TrainConfig):
    """The --keep-styles term (lowdim_sd.style_delta.StyleTerm) for the one subject, or None when it is off."""
    if not config.keep_styles:
        return None
    from lowdim_sd.style_delta import StyleTerm, style_prompts

    if len(subjects) != 1 or not hasattr(trainable, "adapters"):
        raise LowdimError("--keep-styles trains one subject's adapter at a time")
    prompts = style_prompts(model.pipe.tokenizer, list(config.style_prompts), config.prompt, config_token(config))
    return StyleTerm(prompts, trainable.adapters, trainable.name, config.keep_styles, subjects[0].images[:1])


@torch.enable_grad()  # the caller may hold torch.no_grad() (a notebook cell's): the step's backward needs a graph
def _one_step(model, subjects, trainable, optimizer, config, step, input_ids, scaler, styles=None,
              models: StepModels | None = None, dropping: bool = False) -> float:
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for micro in range(config.grad_accum):
        with (dropout_draws(model, config.seed, step, micro, dropping),
              runs.autocast(model.device, config.mixed_precision)):
            losses = denoising_losses(model, subjects, config, step, micro, input_ids, styles=styles, models=models)
        # Summing over subjects gives each subject's slice exactly its own gradient.
        scaler.scale(losses.sum() / config.grad_accum).backward()
        total += float(losses.detach().mean()) / config.grad_accum
    scaler.unscale_(optimizer)  # clip true gradients, not scaled ones
    if config.max_grad_norm:
        clip_per_subject(trainable, config.max_grad_norm)
    return total


def _set_train_mode(model: SDModel, gradient_checkpointing: bool) -> None:
    pipe = model.pipe
    pipe.unet.train()
    pipe.text_encoder.train()
    if gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
        text = pipe.text_encoder  # transformers 5 renamed the switch; older releases only have the old name
        if hasattr(text, "activation_checkpointing_enable"):
            text.activation_checkpointing_enable()
        else:  # transformers 4 recomputes reentrantly by default: an adapter on frozen layers then gets no gradient
            text.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _set_eval_mode(model: SDModel) -> None:
    """Back to inference, checkpointing off: a later run on the same model chooses its own."""
    pipe = model.pipe
    pipe.unet.eval()
    pipe.text_encoder.eval()
    if recomputes_layers(pipe.unet):
        pipe.unet.disable_gradient_checkpointing()
    text = pipe.text_encoder  # transformers 5 renamed the switch; older releases only have the old name
    if recomputes_layers(text):
        (getattr(text, "activation_checkpointing_disable", None) or text.gradient_checkpointing_disable)()
