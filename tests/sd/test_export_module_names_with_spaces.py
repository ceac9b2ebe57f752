"""A model of the user's own may name a module with a space or a slash (``nn.ModuleDict({"my layer": ...})``):
both export formats keep such a name as it is, and diffusers' loader puts each layer's update back on the module of
that name, exactly (kohya files through diffusers' ``_convert_non_diffusers_lora_to_diffusers``, which only turns
``_`` into ``.``). A1111 and ComfyUI match kohya keys against their own module names with ``.`` turned into ``_``,
so a space or a slash passes through them the same way."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors import safe_open
from torch import nn

import lowdim
from lowdim_sd.export import export_adapter
from lowdim_sd.tiny import build_tiny_pipeline

pytest.importorskip("peft", reason="diffusers' load_lora_weights needs the peft backend (pip install peft)")

NAMES = ("my layer", "a/b")
KEYS = {"diffusers": "unet.extra.{}.lora_A.weight", "kohya": "lora_unet_extra_{}.lora_down.weight"}


def _extra_layers() -> nn.ModuleDict:
    torch.manual_seed(1)  # the same base weights in lowdim's model and in the pipeline diffusers loads into
    return nn.ModuleDict({name: nn.Linear(4, 4) for name in NAMES})


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """An adapter on two layers named with a space and a slash, and what each adapted layer gives for one input."""
    unet = nn.Module()
    unet.extra = _extra_layers()
    model = nn.ModuleDict({"unet": unet})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), lowdim.LayerSet("all", ("unet.*",), types=("linear",)))
    with torch.no_grad():
        for param in lowdim.Adapters(model).parameters("default"):
            param.normal_()
    path = lowdim.save_adapter(tmp_path_factory.mktemp("odd") / "odd.safetensors", model, token="zz")
    inputs = torch.randn(3, 4)
    with torch.no_grad():
        expected = {name: unet.extra[name](inputs) for name in NAMES}
        base = _extra_layers()
        assert all(not torch.allclose(expected[name], base[name](inputs)) for name in NAMES)  # a real update
    return path, inputs, expected


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_names_with_a_space_or_slash_load_in_diffusers_onto_their_own_modules(adapted, tmp_path, fmt):
    source, inputs, expected = adapted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the diffusers format's ComfyUI note
        out = export_adapter(source, tmp_path / f"odd.{fmt}.safetensors", fmt, dtype="fp32")
    with safe_open(str(out), framework="pt") as handle:
        assert {KEYS[fmt].format(name) for name in NAMES} <= set(handle.keys())
    pipe = build_tiny_pipeline(seed=0)
    pipe.unet.extra = _extra_layers()
    pipe.load_lora_weights(str(out))
    with torch.no_grad():
        for name in NAMES:
            assert torch.allclose(pipe.unet.extra[name](inputs), expected[name], atol=1e-6), name
