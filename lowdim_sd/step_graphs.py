"""The forward and backward of a training step's text encoder and UNet, captured once as CUDA graphs and
replayed every step (``--cuda-graphs``).

Why: at batch 1 and 512 px an SD1.5 training step on an H100/H200 is bound by the host launching its
kernels, not by the kernels: about 0.2 s a step whatever trains, even all 1.1 B weights
(docs/benchmarks.md). The UNet and the text encoder, forward and backward, dispatch nearly all of a
step's operations (``benchmarks/count_step_launches.py``); a replayed graph launches them at once. The
VAE, the loss and the optimizer stay eager, and so does every other call of the two models
(``--keep-styles`` calls them with its adapters switched off, which a graph would not see).

A graph replays what it captured, so it is made inside one ``train`` run and dropped with it: the
adapters, their scales and the model's weights must not be swapped while it lives, and within a run
they are not (the optimizer updates parameters in place, where the graph reads them).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from lowdim.errors import LowdimError
from lowdim.injection import stacked_factors

if TYPE_CHECKING:
    from lowdim_sd.loading import SDModel

Capture = Callable[[nn.Module, tuple[Tensor, ...]], Callable[..., Tensor]]
WARMUP_CALLS = 3  # torch's advice: a few eager calls on a side stream before capturing


class UNetCall(nn.Module):
    """``unet(noisy, timesteps, hidden)`` as tensors in, one tensor out: what a graph can capture.

    A fresh wrapper per capture, because capturing replaces the wrapper's ``forward``, never the model's.
    ``stack``: the adapters make their factors per group of same-shape layers (``stacked_factors``), which
    saves launches where each is launched from the host; a replayed graph launches none.
    """

    def __init__(self, unet: nn.Module, stack: bool = False) -> None:
        super().__init__()
        self.unet, self.stacking = unet, _Stacking(unet, stack)

    def forward(self, noisy: Tensor, timesteps: Tensor, hidden: Tensor) -> Tensor:
        with self.stacking():
            return self.unet(noisy, timesteps, hidden).sample


class TextCall(nn.Module):
    """``text_encoder(input_ids)``'s hidden states, the same way."""

    def __init__(self, text_encoder: nn.Module, stack: bool = False) -> None:
        super().__init__()
        self.text_encoder, self.stacking = text_encoder, _Stacking(text_encoder, stack)

    def forward(self, input_ids: Tensor) -> Tensor:
        with self.stacking():
            return self.text_encoder(input_ids)[0]


class _Stacking:
    """``stacked_factors(model)`` if wanted, unless the model recomputes its layers during backward
    (gradient checkpointing), where factors made for the forward alone would not match.

    Whether it does is read at the first call and kept: the engine switches checkpointing before a run's
    first step and never during one, and the read walks every module (2 ms a step on SD1.5's UNet)."""

    def __init__(self, model: nn.Module, wanted: bool) -> None:
        self.model = model
        self.stacks: bool | None = None if wanted else False

    def __call__(self):
        if self.stacks is None:
            self.stacks = not recomputes_layers(self.model)
        return stacked_factors(self.model) if self.stacks else contextlib.nullcontext()


def recomputes_layers(model: nn.Module) -> bool:
    """Whether gradient checkpointing is on: the model recomputes its layers during backward."""
    flag = getattr(model, "is_activation_checkpointing", None)  # transformers 5; older ones and diffusers:
    return bool(flag if flag is not None else getattr(model, "is_gradient_checkpointing", False))


def cuda_capture(call: nn.Module, sample: tuple[Tensor, ...]) -> Callable[..., Tensor]:
    torch.cuda.synchronize()
    graphed = torch.cuda.make_graphed_callables(call, sample, num_warmup_iters=WARMUP_CALLS, allow_unused_input=True)
    return cast("Callable[..., Tensor]", graphed)  # a Module in, a Module out; torch types it as any callable


class Graphed:
    """Runs a model through a graph captured at the first call of each input signature (shapes, dtypes,
    which inputs need gradients): a run keeps one signature, so it captures once. A model whose capture
    fails (an operation a graph cannot hold) runs eagerly for the rest of the run, with one warning."""

    def __init__(self, name: str, make_call: Callable[[], nn.Module], capture: Capture) -> None:
        self.name, self.make_call, self.capture = name, make_call, capture
        self.graphs: dict[tuple, Callable[..., Tensor]] = {}
        self.failed: str | None = None
        self.eager: nn.Module | None = None  # after a failed capture

    def __call__(self, *inputs: Tensor) -> Tensor:
        if self.eager is not None:
            return self.eager(*inputs)
        signature = tuple((tuple(t.shape), t.dtype, t.requires_grad) for t in inputs)
        if signature not in self.graphs:
            # Placeholders of the same kind: the graph copies each call's values into them.
            sample = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in inputs)
            try:
                self.graphs[signature] = self.capture(self.make_call(), sample)
            except Exception as error:  # noqa: BLE001 - whatever stops a capture, the step runs eagerly
                self.failed = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                warnings.warn(f"--cuda-graphs: the {self.name} could not be captured ({self.failed}); it runs "
                              f"eagerly", stacklevel=2)
                self.eager = self.make_call()
                return self.eager(*inputs)
        return self.graphs[signature](*inputs)


class StepModels(NamedTuple):
    """How a training step calls its two models: ``text(input_ids)`` and ``unet(noisy, timesteps, hidden)``."""

    text: Callable[[Tensor], Tensor]
    unet: Callable[[Tensor, Tensor, Tensor], Tensor]


def eager_models(pipe: Any) -> StepModels:
    return StepModels(TextCall(pipe.text_encoder, stack=True), UNetCall(pipe.unet, stack=True))


def step_models(model: SDModel, cuda_graphs: bool, mixed_precision: str, gradient_checkpointing: bool,
                capture: Capture | None = None) -> StepModels:
    """Eager calls, or with ``cuda_graphs`` graphed ones (checked first: a refusal is one line)."""
    pipe = model.pipe
    if not cuda_graphs:
        return eager_models(pipe)
    check_graphs(model.device, mixed_precision, gradient_checkpointing)
    capture = capture or cuda_capture
    unet = Graphed("UNet", lambda: UNetCall(pipe.unet), capture)
    if not any(parameter.requires_grad for parameter in pipe.text_encoder.parameters()):
        return StepModels(TextCall(pipe.text_encoder), unet)  # nothing of it trains: one forward, no backward
    return StepModels(Graphed("text encoder", lambda: TextCall(pipe.text_encoder), capture), unet)


def check_graphs(device: torch.device, mixed_precision: str, gradient_checkpointing: bool) -> None:
    """What graphs cannot run with, refused in one line before a step runs."""
    if device.type != "cuda":
        raise LowdimError(f"--cuda-graphs needs a CUDA GPU; the model is on {device.type}")
    if mixed_precision != "no":
        raise LowdimError("--cuda-graphs replays the models as captured, which autocast's cast cache does not "
                          "allow: load the model in fp16 or bf16 (--dtype) instead of --mixed-precision")
    if gradient_checkpointing:
        raise LowdimError("--cuda-graphs with --gradient-checkpointing is not supported: choose one")
