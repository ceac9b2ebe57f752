"""A model the caller hands a run (``personalize(model=)``): frozen for the run's time, handed back as it came."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from lowdim.inject import LayerSet
from lowdim.inject.select import select_layers
from lowdim_sd.modes import left_as_given

if TYPE_CHECKING:
    from lowdim_sd.loading import SDModel


@contextlib.contextmanager
def handed_back(model: SDModel, layers: LayerSet) -> Iterator[None]:
    """The caller's model for the run in the block, then as it came, however the run ends (done, failed, Ctrl-C).

    ``left_as_given`` freezes the UNet, text encoder and VAE for the block (a pipeline from diffusers'
    ``from_pretrained`` is all trainable, and every step would compute and keep a gradient of its whole base),
    puts back each parameter's ``requires_grad`` and ``.grad``, and deletes the adapters the run added. Here,
    besides: the base weights of ``layers``, where the run merges its initial adapter, are copied back bit for bit
    (unmerging subtracts what merging added, which rounds), and each module's train mode is put back (the
    finetune leaves the UNet and text encoder in eval mode, which a pipeline built in-process was not in)."""
    parts = [model.pipe.unet, model.pipe.text_encoder, model.pipe.vae]
    modes = [(module, module.training) for part in parts for module in part.modules()]
    weights = [(weight, weight.detach().to("cpu", copy=True)) for weight in base_weights(model, layers)]
    try:
        with left_as_given(model):
            yield
    finally:
        with torch.no_grad():
            for weight, kept in weights:
                weight.copy_(kept)
        for module, training in modes:
            module.training = training  # module by module: .train() would set every child to one mode


def base_weights(model: SDModel, layers: LayerSet) -> list[torch.nn.Parameter]:
    """The weight Parameters of the layers ``layers`` selects, under an adapter the model already carries too."""
    return [getattr(module, "base_layer", module).weight for _, module in select_layers(model.modules, layers)]
