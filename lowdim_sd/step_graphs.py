"""The UNet's forward and backward of a training step, captured once as CUDA graphs and replayed.

Why: at batch 1 and 512 px an SD1.5 training step on an H100/H200 is bound by the host launching its
kernels, not by the kernels: about 0.2 s a step whatever trains, even all 1.1 B weights
(docs/benchmarks.md). The UNet's forward and backward are two thirds of a step's launches; a replayed
graph launches them at once. The VAE, the text encoder, the loss and the optimizer stay eager: they
change between runs (``--keep-styles`` toggles adapters around its own UNet call) or are cheap.

A graph replays what it captured, so it is made inside one ``train`` run and dropped with it: the
adapters, their scales and the model's weights must not be swapped while it lives, and within a run
they are not (the optimizer updates parameters in place, where the graph reads them).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lowdim.errors import LowdimError

UNetRunner = Callable[[Tensor, Tensor, Tensor], Tensor]
Capture = Callable[[nn.Module, tuple[Tensor, ...]], Callable[..., Tensor]]
WARMUP_CALLS = 3  # torch's own advice: a few eager calls on a side stream before capturing


class UNetCall(nn.Module):
    """``unet(noisy, timesteps, hidden)`` as tensors in, one tensor out: what a graph can capture.

    A fresh wrapper per capture, because capturing replaces the wrapper's ``forward``, never the UNet's.
    """

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, noisy: Tensor, timesteps: Tensor, hidden: Tensor) -> Tensor:
        return self.unet(noisy, timesteps, hidden, return_dict=False)[0]


def cuda_capture(call: nn.Module, sample: tuple[Tensor, ...]) -> Callable[..., Tensor]:
    torch.cuda.synchronize()
    return torch.cuda.make_graphed_callables(call, sample, num_warmup_iters=WARMUP_CALLS,
                                             allow_unused_input=True)


class GraphedUNet:
    """Runs the UNet through a graph captured at the first call of each input signature (shapes, dtypes,
    which inputs need gradients): a run keeps one shape, so it captures once."""

    def __init__(self, unet: nn.Module, capture: Capture = cuda_capture) -> None:
        self.unet = unet
        self.capture = capture
        self.graphs: dict[tuple, Callable[..., Tensor]] = {}

    def __call__(self, noisy: Tensor, timesteps: Tensor, hidden: Tensor) -> Tensor:
        inputs = (noisy, timesteps, hidden)
        signature = tuple((tuple(t.shape), t.dtype, t.requires_grad) for t in inputs)
        if signature not in self.graphs:
            # Placeholders of the same kind: the graph copies each call's values into them.
            sample = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in inputs)
            self.graphs[signature] = self.capture(UNetCall(self.unet), sample)
        return self.graphs[signature](*inputs)


def eager_unet(unet: nn.Module) -> UNetRunner:
    return lambda noisy, timesteps, hidden: unet(noisy, timesteps, hidden).sample


def unet_runner(model, cuda_graphs: bool, mixed_precision: str, gradient_checkpointing: bool,
                capture: Capture | None = None) -> UNetRunner:
    """How a training run calls the UNet: eagerly, or through graphs with ``cuda_graphs``."""
    if not cuda_graphs:
        return eager_unet(model.pipe.unet)
    check_graphs(model.device, mixed_precision, gradient_checkpointing)
    return GraphedUNet(model.pipe.unet, capture or cuda_capture)


def check_graphs(device: torch.device, mixed_precision: str, gradient_checkpointing: bool) -> None:
    """What graphs cannot run with, refused in one line before a step runs."""
    if device.type != "cuda":
        raise LowdimError(f"--cuda-graphs needs a CUDA GPU; the model is on {device.type}")
    if mixed_precision != "no":
        raise LowdimError("--cuda-graphs replays the UNet as captured, which autocast's cast cache does not "
                          "allow: load the model in fp16 or bf16 (--dtype) instead of --mixed-precision")
    if gradient_checkpointing:
        raise LowdimError("--cuda-graphs with --gradient-checkpointing is not supported: choose one")
