"""A model the caller hands a run (``personalize(model=)``, ``run_train(model=)``): checked against the job,
frozen for the run's time, handed back as it came."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import torch

from lowdim.errors import LowdimError
from lowdim.injection import LayerSet
from lowdim.injection.select import select_layers
from lowdim_sd.loading import canonical_model
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
    # cast: a Module attribute, which torch types as Tensor | Module
    return [cast(torch.nn.Parameter, getattr(module, "base_layer", module).weight)
            for _, module in select_layers(model.modules, layers)]


def check_given_model(model: SDModel, job: Any, given: str) -> None:
    """A model the caller loaded is the one the job describes, and can train where it is, or one line says which
    part does not: its SDModel's device and dtype against its pipeline's weights, its dtype on its device, its
    name against ``job.model`` (else the adapter would record the model it trained on while the job says
    another), and the job's device and dtype, when set, against the model's. ``given``: the call, as
    ``personalize(model=...)``, whose job class the lines name."""
    from lowdim_sd.devices import check_training_dtype, dtype_name, resolve_device, resolve_dtype
    from lowdim_sd.loading import pipeline_placement

    owner = type(job).__name__
    device, dtype = pipeline_placement(model.pipe, given)
    if dtype != model.dtype or not same_device(device, model.device):  # an SDModel built by hand
        raise LowdimError(f"{given}: the SDModel says {model.dtype} on {model.device} and its pipeline's weights "
                          f"are {dtype} on {device}; make it with SDModel.from_pipeline(pipe), which reads them")
    try:
        check_training_dtype(str(model.device), dtype_name(model.dtype, "fp32"))  # only fp16/bf16 are refused
    except LowdimError as error:
        raise LowdimError(f"{given}: the model is {model.dtype} on {model.device}: {error}") from None
    if not names_the_model(job.model, model):
        raise LowdimError(f"{given}: the job names the model '{job.model}' and model= is {model.name}; set "
                          f"{owner}.model={model.name!r}, or leave model= out")
    if job.device != "auto" and not same_device(resolve_device(job.device), model.device):
        raise LowdimError(f"{given}: {owner}.device is '{job.device}' and model= is on {model.device}; "
                          f"leave device at 'auto' (a given model runs where it is), or move the model there")
    if job.dtype != "auto" and resolve_dtype(job.dtype, model.device) != model.dtype:
        raise LowdimError(f"{given}: {owner}.dtype is '{job.dtype}' and model= is {model.dtype}; leave "
                          f"dtype at 'auto' (a given model runs in its own), or convert the model")


def names_the_model(name: str, model: SDModel) -> bool:
    """Whether ``name`` (an alias, a registered name, its hub id or folder, a path) stands for ``model``."""
    from lowdim_sd.registered_models import registered_entry

    entry = registered_entry(name)
    source = getattr(entry.value, "source", None) if entry is not None else None
    named = {canonical_model(name), *([canonical_model(str(source))] if source is not None else [])}
    return not named.isdisjoint({canonical_model(model.name), canonical_model(model.source)})


def same_device(one: torch.device, other: torch.device) -> bool:
    """'cuda' (the current GPU, as load_sd names it) and 'cuda:0' (as its weights say) are one device."""
    return one.type == other.type and (one.index is None or other.index is None or one.index == other.index)
