"""Phase 1 of HyperDreamBooth (§4.2): train a hypernetwork on (image, precomputed θ) pairs.

    L = α · mean_k D(θ̂_k) + β · mean_k ‖θ̂_k − θ‖²          (eq. 2, every iterate k = 1..s supervised)

D is the denoising loss of the frozen SD model with the predicted adapter: ONE adapter of the space
is injected with ``batch=None`` and the model runs under ``Adapters.override`` with the predicted
(B, ...) tensors, so sample j uses identity j's prediction. All iterates go through the UNet in one
batch of s·B samples. ‖·‖² is ``lowdim.hyper.weight_loss`` (summed over params, mean over the batch).

Runs through HF accelerate: the same code on one CPU, or under ``accelerate launch`` on many GPUs.
Data order, noise and timesteps are functions of (seed, step), so a resumed run repeats exactly what
an uninterrupted one would do.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim.hyper.encoder import TINY_ENCODER as TINY_ENCODER  # re-exported: cli.hyper_commands, tests
from lowdim_sd import checkpoints, runs, stopping
from lowdim_sd.checkpoint_reading import in_checkpoint_words
from lowdim_sd.hypertrain_checks import check_features_cover, check_job, check_weights_finite
from lowdim_sd.hypertrain_io import (
    FeatureCache,
    MetricsLog,
    PairBatch,
    Pairs,
    PairUnreadable,
    StepSampler,
    all_targets,
    check_has_identities,
    encoder_weights_context,
    extra_images_loader,
    feature_caches,
    last_validation,
    model_to_train,
    run_metadata,
    split_identities,
    trim_metrics,
    validated,
    validation_line,
    write_split,
)
from lowdim_sd.hypertrain_job import HyperTrainJob as HyperTrainJob  # this module's API too
from lowdim_sd.hypertrain_job import HyperTrainResult as HyperTrainResult
from lowdim_sd.hypertrain_losses import Diffusion, evaluate, extra_loss, pair_losses, unwrap
from lowdim_sd.hypertrain_processes import handed_over, make_accelerator, process_mean
from lowdim_sd.hypertrain_resume import (
    checkpoint_to_resume,
    clear_earlier_run,
    drop_unfinished_checkpoints,
    earlier_run_set_aside,
    put_back_set_aside,
    resume_settings,
    worded_differences,
)
from lowdim_sd.hypertrain_steps import run_steps
from lowdim_sd.hypertrain_words import RANDOM_ENCODER, hyper_flags_named
from lowdim_sd.images import upscaling_told_once
from lowdim_sd.optim import one_kernel_update
from lowdim_sd.process_failures import AnotherProcessFailed, Failure, another_failure, failing_together
from lowdim_sd.retrieval_fill import fill_retrieval
from lowdim_sd.train import TrainingDiverged
from lowdim_sd.weight_dataset import WeightDataset

if TYPE_CHECKING:
    from lowdim.hyper.network import HyperNetwork



@hyper_flags_named  # outermost: HyperConfig's refusals in its checks and in the run name the command's flags
@failing_together()  # under a launcher: a process that fails, from its first check on, stops the others with its line
@runs.one_run_per_folder(lambda job: job.out, check=check_job)
def train_hypernet(job: HyperTrainJob, progress: bool = True) -> HyperTrainResult:
    """Train (or, with ``resume``, continue) a hypernetwork; the result says where it is saved, and holds its
    last validation and (main process) the network itself."""
    full = _checked_weights(job)
    out = job.out
    put_back_set_aside(out)  # before anything reads out: a killed --overwrite's earlier run is the one there
    folder = checkpoint_to_resume(out, job.resume, job.hyper.get("architecture") == "retrieval", job.overwrite)
    accelerator = make_accelerator(job)
    settings = resume_settings(job, full, accelerator.num_processes)
    if folder is not None:  # before anything is written: a changed option must not half-continue a run
        checkpoints.check_resume(folder, settings, worded_differences)  # named as its reader set them
    full.subset(full.names, all_images=job.all_images).check_images()
    numbers = {name: number for number, name in enumerate(full.names)}
    split = split_identities(full.names, job, out, full.people())
    train_set, val_set = _subsets(job, full, *split)
    check_features_cover(job, train_set, val_set, progress and accelerator.is_main_process)
    if job.hyper.get("architecture") == "retrieval":
        return _retrieval_run(job, accelerator.is_main_process, train_set, val_set, numbers, split, progress)

    net, start = _network(job, full, folder)  # the encoder, --set keys and --heads refuse here
    loop = _Loop.prepare(job, accelerator, net, full, train_set, val_set, numbers, folder, start, settings)
    _clear_for_the_run(loop, start, split)
    loop.say = progress
    result = HyperTrainResult(out / "hypernet.safetensors", start, train_names=split[0], val_names=split[1],
                              metrics=loop.log.path, main_process=loop.main)
    _train(loop, result, full.resolution, progress)
    return result


def _checked_weights(job: HyperTrainJob) -> WeightDataset:
    """The weight folder the job reads, refused before anything else if it holds no identity or a non-finite
    value; the job's model is set from it."""
    full = WeightDataset(job.weights, image_root=job.image_root)
    check_has_identities(full)
    check_weights_finite(full)
    job.model = model_to_train(job, full)
    return full


def _retrieval_run(job: HyperTrainJob, main: bool, train_set: WeightDataset, val_set: WeightDataset | None,
                   numbers: dict[str, int], split: tuple[list[str], list[str]], progress: bool) -> HyperTrainResult:
    """A retrieval head's run: filled, not trained."""
    # Its checks run inside the fill (encoder, keys): the earlier run waits aside, back if the fill is refused.
    with earlier_run_set_aside(job.out, job.overwrite and main):
        write_split(job.out, *split)
        filled = fill_retrieval(job, train_set, val_set, numbers, job.out, progress)
    filled.validation = last_validation(filled.metrics) if filled.main_process else None
    return filled


def _clear_for_the_run(loop: _Loop, start: int, split: tuple[list[str], list[str]]) -> None:
    """Past every check, the network built: what --overwrite replaces goes, and the run's split is written, so a
    refused run costs the earlier one nothing and leaves no split behind."""
    job = loop.job
    if job.overwrite and loop.main:
        clear_earlier_run(job.out)
    loop.accelerator.wait_for_everyone()
    if loop.main:  # from a step-0 checkpoint the run validates step 0 again: its earlier record goes, not twice
        trim_metrics(loop.log.path, start if job.resume and start > 0 else -1)
    write_split(job.out, *split)


def _train(loop: _Loop, result: HyperTrainResult, resolution: int, progress: bool) -> None:
    """The run's steps under its progress bar, then (main process) its end: the result gets its network, last
    validation and time."""
    started = time.perf_counter()
    with failing_together():  # under a launcher: a process that fails stops the others with its line
        # One line for all the small photos (each read every epoch), even if stopped; DataLoader workers warn apart.
        with runs.progress(loop.job.steps, start=loop.step, enabled=progress and loop.main) as advance, \
                upscaling_told_once(resolution):
            if loop.start_unvalidated():
                loop.validate()
            run_steps(loop, result, advance, started)
        loop.accelerator.wait_for_everyone()
    if loop.main:
        loop.finish(result)
        result.validation = last_validation(result.metrics)
    result.seconds = time.perf_counter() - started


def _subsets(job: HyperTrainJob, full: WeightDataset, train: list[str],
             val: list[str]) -> tuple[WeightDataset, WeightDataset | None]:
    return full.subset(train, all_images=job.all_images), (full.subset(val) if val else None)


def _network(job: HyperTrainJob, full: WeightDataset, folder: Path | None) -> tuple[torch.nn.Module, int]:
    """The hypernetwork and the step it is at: the checkpoint's, or a new one seeded by the job."""
    from lowdim.hyper import HyperConfig, build_hypernet, load_hypernet

    if folder is not None:
        try:
            with encoder_weights_context(job):
                net = load_hypernet(folder / "hypernet.safetensors", space=full.space, layers=full.layers)
        except LowdimError as error:  # a cut file: resume from the older checkpoint, as its other files say
            raise in_checkpoint_words(folder / "hypernet.safetensors", error) from None
        # The loaded config holds the backbone's whole expanded transformers config; the job's, as a fresh run
        # keeps it, makes the resumed file the same as an uninterrupted run's. Only where the two agree on
        # everything else (check_resume compared them; a checkpoint from before settings were recorded may not).
        given, loaded = HyperConfig.from_dict(job.hyper), net.config
        if {**loaded.to_dict(), "encoder_config": None} == {**given.to_dict(), "encoder_config": None}:
            net.config = given
        return net, checkpoints.step_to_continue(folder, job.steps)
    torch.manual_seed(job.seed)
    config = HyperConfig.from_dict(job.hyper)
    try:
        with encoder_weights_context(job):
            return build_hypernet(config, full.space, full.layers), 0
    except OSError:
        raise LowdimError(f"could not load the image encoder '{config.encoder}' (offline, or not a vision "
                          f"model?); pass a local folder, or {RANDOM_ENCODER} for a random one") from None


@dataclass
class _Loop:
    """What the steps of one run share: the prepared network, optimizer and data, and where they log."""

    job: HyperTrainJob
    accelerator: Any
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    trainable: list[torch.nn.Parameter]
    loader: Any
    extras: Iterator | None  # batches of --extra-images, one per step
    diffusion: Diffusion | None
    val_set: WeightDataset | None
    numbers: dict[str, int]
    caches: dict[str, FeatureCache | None]  # a frozen encoder's features: "train", "val", "extra"
    mean: dict | None  # the mean target, the baseline validation reports against
    log: MetricsLog
    metadata: dict
    step: int
    updating: bool = False  # inside the optimizer update: a stop now leaves it half applied
    settings: dict = field(default_factory=dict)  # what a resume must repeat (resume_settings)
    say: bool = False  # print each validation above the progress bar (it is also in metrics.jsonl)

    @classmethod
    def prepare(cls, job: HyperTrainJob, accelerator: Any, net: torch.nn.Module, full: WeightDataset,
                train_set: WeightDataset, val_set: WeightDataset | None, numbers: dict[str, int],
                folder: Path | None, start: int, settings: dict) -> _Loop:
        extra = extra_images_loader(job, train_set, start, accelerator.num_processes)
        # A --features file made for another encoder setting is refused here, before the SD model loads.
        caches = feature_caches(job, net, train_set, val_set, extra)
        standardize = folder is None and bool(getattr(net.config, "standardize", False))
        targets = all_targets(train_set) if standardize or val_set is not None else None
        if standardize and targets is not None:  # read above when standardizing: the transformer head's option
            cast("HyperNetwork", net).set_target_statistics(targets)
        mean = {layer: {k: v.mean(0) for k, v in p.items()} for layer, p in targets.items()} if targets else None
        net.to(accelerator.device).train()
        trainable = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=job.learning_rate, weight_decay=job.weight_decay,
                                      fused=one_kernel_update(trainable))
        if folder is not None:
            checkpoints.load_optimizer(optimizer, trainable, folder / "optimizer.safetensors")
        index = full.index
        diffusion = Diffusion(job, index, full.layers, accelerator.device) if job.alpha > 0 else None
        sampler = StepSampler(len(train_set), job.batch_size * accelerator.num_processes, job.seed, start, job.steps)
        loader = torch.utils.data.DataLoader(Pairs(train_set, numbers), batch_size=job.batch_size, sampler=sampler,
                                             num_workers=job.num_workers)
        net, optimizer, loader = accelerator.prepare(net, optimizer, loader)
        metadata = run_metadata(job, index, accelerator.unwrap_model(net), settings)
        return cls(job, accelerator, net, optimizer, trainable, loader,
                   iter(accelerator.prepare(extra)) if extra is not None else None, diffusion, val_set, numbers,
                   caches, mean, MetricsLog(job.out / "metrics.jsonl", accelerator.is_main_process), metadata, start,
                   settings=settings)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def validating(self) -> bool:
        return self.val_set is not None and bool(self.job.val_every)

    def update(self, batch: PairBatch) -> float:
        """One optimizer step on a batch; returns its loss, averaged over processes, after logging it."""
        job, accelerator = self.job, self.accelerator
        self.optimizer.zero_grad(set_to_none=True)
        with accelerator.autocast():
            losses = pair_losses(self.net, self.diffusion, batch, self.step, job, train=True,
                                 cache=self.caches["train"])
            if self.extras is not None:
                diffusion = cast(Diffusion, self.diffusion)  # loaded: --extra-images need --alpha > 0 (check_job)
                losses["loss"] = losses["loss"] + job.alpha * extra_loss(
                    self.net, diffusion, next(self.extras), self.step, job, self.caches["extra"])
        loss: Tensor = losses["loss"]
        if not torch.isfinite(loss.detach()):
            raise TrainingDiverged(f"loss became {float(loss.detach())} at step {self.step + 1}; try a lower --lr")
        accelerator.backward(loss)
        if job.max_grad_norm:
            accelerator.clip_grad_norm_(self.trainable, job.max_grad_norm)
        with stopping.held():  # a signal now is taken up at the next step's check, with a checkpoint
            self.updating = True
            self.optimizer.step()
            self.step += 1
            self.updating = False
        value = process_mean(accelerator, loss)  # first: every process reduces the three in this order
        weight, denoise = (process_mean(accelerator, losses[key]) for key in ("weight_loss", "diffusion_loss"))
        if job.log_every and self.step % job.log_every == 0:
            self.log.write({"step": self.step, "split": "train", "loss": value, "weight_loss": weight,
                            "weight_loss_per_iterate": losses["per_iterate"].tolist(), "diffusion_loss": denoise,
                            "time": time.time()})
        return value

    def validate(self) -> None:
        """The held-out losses at this step: the main process measures and logs, the others wait for it."""
        if self.main:
            val_set = cast(WeightDataset, self.val_set)  # called only while validating: there is one
            scores = evaluate(unwrap(self.net), self.diffusion, val_set, self.job, self.numbers,
                              self.caches["val"], self.mean)
            self.log.write({"step": self.step, "split": "val", **scores})
            if self.say:
                from rich import get_console

                # soft_wrap: one line in a log however narrow the console (piped: 80 columns), as the CLI's own
                get_console().print(validation_line(self.step, scores), highlight=False, soft_wrap=True, markup=False)
        self.accelerator.wait_for_everyone()

    def checkpoint(self) -> Path:
        return checkpoints.save_hypernet(self.job.out, self.step, self.accelerator.unwrap_model(self.net),
                                         self.optimizer, self.trainable, self.metadata, self.job.keep_checkpoints,
                                         self.settings)

    def start_unvalidated(self) -> bool:
        """Whether the run validates its start step before its first update: step 0 always; a resumed start an
        uninterrupted run validates (a --val-every step, the last one) when metrics.jsonl lacks it, as a stop during
        that validation leaves it: the stop saved the step before its numbers were logged."""
        step, job = self.step, self.job
        if not self.validating or step > 0 and step % job.val_every and step != job.steps:
            return False
        return step == 0 or not validated(self.log.path, step)

    def finish(self, result: HyperTrainResult) -> None:
        """The run's end (main process): its last checkpoint and the network file. A stop in either keeps the end
        step as a stop in the loop does, so a Ctrl-C in a run's last seconds loses none of its steps."""
        from lowdim.hyper import save_hypernet

        try:
            self.finish_checkpoints()
            # On the CPU, no gradients: as load_hypernet gives it.
            result.net = handed_over(self.accelerator, self.net)
            result.net.metadata = {**self.metadata, "steps": self.step}  # what load_hypernet(result.path) reads back
            save_hypernet(result.path, result.net, result.net.metadata)
        except KeyboardInterrupt as stop:
            self.stopped(stop)

    def kept_checkpoint(self) -> Path:
        """This step's checkpoint: the one written already (periodic, the end's, the one resumed from), or a new one."""
        latest = checkpoints.latest(self.job.out)
        return latest if latest is not None and checkpoints.saved_step(latest) == self.step else self.checkpoint()

    def finish_checkpoints(self) -> None:
        """At the run's end, its last step is what a later --resume continues from (a longer run, or the rest of
        a --max-minutes budget); without periodic checkpoints, a stop's leftover one is dropped instead, so a
        resume can never go back to it and redo the steps since."""
        out = self.job.out
        if self.job.checkpoint_every:
            latest = checkpoints.latest(out)
            if latest is None or checkpoints.saved_step(latest) != self.step:
                self.checkpoint()
        else:
            shutil.rmtree(out / checkpoints.FOLDER, ignore_errors=True)

    def stopped(self, stop: BaseException) -> NoReturn:
        """Keep a checkpoint of a stopped run where one can be kept, and say so."""
        failure = another_failure(stop)  # the launcher's SIGTERM, or the watch's stop, as another process failed
        if failure is not None:
            self.another_failed(failure)
        if not self.main:  # only the main process writes the checkpoint, and its line says so
            where = f"process {self.accelerator.process_index + 1} of {self.accelerator.num_processes}"
            runs.reraise(stop, f"{runs.stop_word(stop)} in {where} at step {self.step}; the main process's line "
                               "says what was kept")
        last = checkpoints.latest(self.job.out)
        note = runs.stop_note(stop, self.step, self.updating, self.kept_checkpoint, last=last)
        drop_unfinished_checkpoints(self.job.out)  # the save the stop cut short, if it could not be redone
        runs.reraise(stop, note)

    def another_failed(self, failure: Failure) -> NoReturn:
        """Stop with the line of another process that failed, the main process keeping this step as a stop does (the
        update is whole: no collective runs inside it), so that --resume loses none of the steps since the last
        checkpoint."""
        if not self.main:  # the main process's line says what it kept, unless the main process is the one that failed
            raise AnotherProcessFailed(f"{failure}; the main process's line says what was kept" if failure.rank != 0
                                       else str(failure))
        if self.step == 0 or self.updating:  # nothing trained yet, or an update a forced stop cut in two
            raise AnotherProcessFailed(str(failure))
        with stopping.held():  # the launcher's SIGTERM, which follows the failed process's end, waits for the save
            kept = self.kept_checkpoint()
        raise AnotherProcessFailed(f"{failure}; step {self.step} is saved to {kept}: {runs.RESUME} continues from it")

    def unreadable(self, error: PairUnreadable) -> NoReturn:
        """Stop on a pair that can no longer be read (a shard removed mid-run), keeping this step first as a stop
        does: once the folder is whole again, --resume loses none of the steps since the last checkpoint."""
        if not self.main:  # the main process keeps the step and says so
            raise error
        if self.step == 0:  # nothing trained yet: a checkpoint of the start would only be a folder to clean up
            raise LowdimError(str(error)) from None
        kept = self.kept_checkpoint()
        raise LowdimError(f"{error}; step {self.step} is saved to {kept}: {runs.RESUME} continues from it") from None
