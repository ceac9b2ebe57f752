"""A space whose rank differs layer to layer (a plugin's `rank(layer)`, VeRA's clamped width) exports each layer at
its own rank in the kohya layout, not zero-padded to the adapter's largest (review H, H8: a 64x64 layer written at
rank 129, a 3.5 MB file for a 41 KB adapter), and diffusers' own loader still draws what lowdim draws. The
diffusers layout keeps one rank: it has no alphas, and older diffusers scale every layer of another rank wrongly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from test_plugins import plugin_module
from torch import nn

import lowdim
from lowdim import Space, SpaceConfig, option
from lowdim_sd.architecture import LAYER_SETS
from lowdim_sd.export import export_adapter
from lowdim_sd.tiny import build_tiny_pipeline

pytest.importorskip("peft", reason="diffusers' load_lora_weights needs the peft backend (pip install peft)")
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")]


@dataclass
class WidthConfig(SpaceConfig):
    divisor: int = option(8, "A layer's rank is min(out, in) // divisor.")


class WidthRank(Space):
    """A LoRA whose rank follows the layer: min(out, in) // divisor (at least 1), so ranks differ by layer."""

    name = "width-rank"
    config_class = WidthConfig

    def rank(self, layer):
        return max(1, min(layer.out_features, layer.in_features) // self.config.divisor)

    def param_shapes(self, layer):
        return {"down": (self.rank(layer), layer.in_features), "up": (layer.out_features, self.rank(layer))}

    def init_params(self, layer, generator):
        return {"down": torch.randn(self.rank(layer), layer.in_features, generator=generator),
                "up": torch.zeros(layer.out_features, self.rank(layer))}

    def factors(self, params, buffers):
        return params["down"], params["up"]


def draw(pipe) -> np.ndarray:
    generator = torch.Generator().manual_seed(5)
    return pipe("a photo of a face", num_inference_steps=3, height=16, width=16, generator=generator,
                output_type="np").images


@pytest.fixture(scope="module")
def per_layer_adapter(tmp_path_factory):
    """(adapter file, its layers' ranks, the pictures lowdim draws with it) of a random width-rank adapter."""
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin",
                                             plugin_module("width", register_spaces=lambda register:
                                                           register(WidthRank))])
    with lowdim.use_registry(registry):
        pipe = build_tiny_pipeline(seed=0)
        parts = nn.ModuleDict({"unet": pipe.unet, "text_encoder": pipe.text_encoder})
        adapters = lowdim.inject(parts, lowdim.get_space("width-rank"), LAYER_SETS["unet+text"], seed=0)
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for param in adapters.parameters("default"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
        ranks = {name: slot.space.rank(slot.layer) for name, slot in adapters.slots("default").items()}
        path = lowdim.save_adapter(tmp_path_factory.mktemp("width") / "me.safetensors", adapters)
        yield path, ranks, draw(pipe)


def test_kohya_writes_each_layer_at_its_own_rank_and_diffusers_draws_the_lowdim_pictures(per_layer_adapter,
                                                                                         tmp_path):
    source, ranks, expected = per_layer_adapter
    assert len(set(ranks.values())) > 1  # the point: ranks differ between layers
    assert np.abs(expected - draw(build_tiny_pipeline(seed=0))).max() > 0.05  # the adapter matters
    out = export_adapter(source, tmp_path / "kohya.safetensors", "kohya", dtype="fp32")
    tensors = load_file(out)
    written = {key.removesuffix(".lora_down.weight"): value.shape[0] for key, value in tensors.items()
               if key.endswith(".lora_down.weight")}
    from lowdim_sd.export import kohya_name

    assert written == {kohya_name(name): rank for name, rank in ranks.items()}
    alphas = {float(value) for key, value in tensors.items() if key.endswith(".alpha")}
    assert len(alphas) == 1  # one alpha for the file: diffusers maps per-layer alphas onto the wrong modules
    fresh = build_tiny_pipeline(seed=0)
    fresh.load_lora_weights(str(out))
    assert np.abs(draw(fresh) - expected).max() < 1e-3
    with safe_open(str(out), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["rank"] == meta["ss_network_dim"] == str(max(ranks.values()))
    assert meta["ss_network_alpha"] == str(int(alphas.pop()))


def test_the_diffusers_layout_keeps_one_rank_and_draws_the_lowdim_pictures(per_layer_adapter, tmp_path):
    source, ranks, expected = per_layer_adapter
    out = export_adapter(source, tmp_path / "diffusers.safetensors", "diffusers", dtype="fp32")
    downs = {value.shape[0] for key, value in load_file(out).items() if key.endswith(".lora_A.weight")}
    assert downs == {max(ranks.values())}
    fresh = build_tiny_pipeline(seed=0)
    fresh.load_lora_weights(str(out))
    assert np.abs(draw(fresh) - expected).max() < 1e-3


def test_a_kohya_export_in_fp16_stays_close(per_layer_adapter, tmp_path):
    source, _, expected = per_layer_adapter
    out = export_adapter(source, tmp_path / "kohya16.safetensors", "kohya", dtype="fp16")
    fresh = build_tiny_pipeline(seed=0)
    fresh.load_lora_weights(str(out))
    assert np.abs(draw(fresh) - expected).max() < 1e-2
