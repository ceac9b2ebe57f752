"""A training step gone non-finite: found with one read-back a step, stopped with the last good state saved, and
told with the hints that apply (``lowdim_sd.train``'s guard)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim.option_words import either

if TYPE_CHECKING:
    from lowdim_sd.loading import SDModel
    from lowdim_sd.train_settings import TrainConfig


class TrainingDiverged(LowdimError):
    """The loss or a gradient became NaN or infinite."""


# A start (--init) whose values pass this diverges at any learning rate: a trained adapter's stay near 1
# (a LiDB file's largest: about 0.5), so such a file is an edited or broken one, and the rate is not to blame.
HUGE_START = 1e3
# Set on each parameter a run trains from an --init start: that start's largest magnitude, read if it diverges.
START_PEAK = "_lowdim_start_peak"


def note_start(parameters: Iterable[Tensor], start: Iterable[Tensor]) -> None:
    """Mark the parameters a run trains with the largest magnitude of the adapter it starts from (--init), so a
    divergence can name it (the start itself may be merged into the model's weights by then)."""
    peak = max((float(value.detach().abs().max()) for value in start if value.numel()), default=0.0)
    for parameter in parameters:
        setattr(parameter, START_PEAK, peak)


def huge_start(parameters: Iterable[Tensor]) -> float | None:
    """The largest value of the --init start ``parameters`` were marked with, where it is huge; else None."""
    peak = max((getattr(parameter, START_PEAK, 0.0) for parameter in parameters), default=0.0)
    return peak if peak > HUGE_START else None


def stop_if_diverged(loss: float, step: int, trainable, out_dir: Path | None, checkpoint,
                     overflow_is_skipped: bool = False, hints: str = "a lower --lr") -> None:
    # With loss scaling, infinite gradients are an overflow the scaler answers by skipping the step
    # and lowering its scale; only a non-finite loss means training itself went wrong.
    grads_finite = overflow_is_skipped or all_finite([p.grad for p in trainable.parameters if p.grad is not None])
    if math.isfinite(loss) and grads_finite:
        return
    kept = "no checkpoint was written"  # a run with no folder of its own (precompute's, a Python caller's)
    if out_dir is not None:  # the parameters are still the last finite ones: nothing was applied yet
        kept = f"the last good state is saved in {checkpoint(step, keep=10**6)}"
    what = (f"the loss became {loss}" if not math.isfinite(loss)
            else f"a gradient became NaN or infinite (the loss was still {loss:.4g})")
    peak = huge_start(trainable.parameters)
    advice = f"try {hints}" if peak is None else (
        f"the {either('--init', 'initial')} adapter holds values up to {peak:.3g}, where a trained adapter's stay "
        f"near 1, so no learning rate trains from it: check that file")
    if out_dir is not None:
        _note_in_its_folder(trainable, out_dir, Divergence(step + 1, what, advice))
    raise TrainingDiverged(f"{what} at step {step + 1}; training stopped and {kept}; {advice}")


@dataclass(frozen=True)
class Divergence:
    """What a diverged run says of it: the step that went non-finite (from 1), what did, and what may help."""

    step: int
    what: str
    advice: str


def _note_in_its_folder(trainable, out_dir: Path, divergence: Divergence) -> None:
    """Let a trainable that keeps a record of its run in ``out_dir`` note the divergence there (precompute's batch:
    ``precompute_batches.BatchTrainable``): resumed from the last good state with the same settings, the run would
    go non-finite at the same step again."""
    note = getattr(trainable, "note_divergence", None)
    if callable(note):
        note(out_dir, divergence)


def divergence_hints(model: SDModel, config: TrainConfig) -> str:
    """What may bring a diverged run back, only the settings that are not already the safe ones."""
    hints = ["a lower --lr", *(["--mixed-precision no"] if config.mixed_precision != "no" else []),
             *(["--dtype fp32"] if model.dtype in (torch.float16, torch.bfloat16) else [])]
    return hints[0] if len(hints) == 1 else ", ".join(hints[:-1]) + " or " + hints[-1]


def all_finite(tensors: list[Tensor]) -> bool:
    """Whether every element is finite, read back once.

    A host-bound GPU step pays per kernel launched, and isfinite is five kernels per tensor: 1,760 a step
    for SD1.5's 352 rank-relaxed gradients. A norm is infinite or NaN whenever an element is, so one
    multi-tensor norm answers for all of them; only a norm that overflows on finite elements (large fp16
    values) needs the element-wise look.
    """
    if not tensors:
        return True
    if bool(torch.isfinite(torch.nn.utils.get_total_norm(tensors))):
        return True
    return bool(torch.stack([torch.isfinite(tensor).all() for tensor in tensors]).all())
