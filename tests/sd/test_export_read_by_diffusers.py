"""Exported SD LoRA files mean what lowdim's factors mean: the diffusers layout holds one rank and the same
up @ down per layer (4-D factors for the UNet's 1x1 convolutions), and diffusers' own reader (load_lora_weights
+ fuse_lora) adds exactly up @ down to each layer's weight, for kohya and diffusers files alike. Layers and ranks
are drawn from the tiny pipeline's linear and 1x1-conv layers."""

from __future__ import annotations

import functools

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lowdim_sd.export import _with_text_out_proj, sd1_conv1x1_layers, split_layer_name, to_diffusers, to_kohya
from lowdim_sd.tiny import build_tiny_pipeline

PARTS = ("unet", "text_encoder")


@functools.lru_cache(1)
def layer_shapes() -> dict[str, tuple[int, int]]:
    """(out, in) of every linear and 1x1-conv layer of the tiny pipeline, by lowdim layer name."""
    pipe = build_tiny_pipeline(seed=0)
    shapes = {}
    for part in PARTS:
        for name, module in getattr(pipe, part).named_modules():
            if isinstance(module, nn.Linear):
                shapes[f"{part}.{name}"] = (module.out_features, module.in_features)
            elif isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
                shapes[f"{part}.{name}"] = (module.out_channels, module.in_channels)
    return shapes


@st.composite
def factors(draw):
    """{layer: (down, up)} for 1 to 6 drawn layers, each at its own rank 1..5."""
    chosen = draw(st.lists(st.sampled_from(sorted(layer_shapes())), min_size=1, max_size=6, unique=True))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    drawn = {}
    for name in chosen:
        out, inp = layer_shapes()[name]
        rank = draw(st.integers(1, 5))
        drawn[name] = (torch.randn(rank, inp, generator=generator), torch.randn(out, rank, generator=generator))
    return drawn


def weights(pipe) -> dict[str, torch.Tensor]:
    return {f"{part}.{key}": value.clone() for part in PARTS for key, value in getattr(pipe, part).state_dict().items()}


def as_matrix(factor: torch.Tensor) -> torch.Tensor:
    return factor.reshape(factor.shape[0], factor.shape[1])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=factors())
def test_the_diffusers_layout_has_one_rank_and_the_same_update(drawn):
    conv = sd1_conv1x1_layers(drawn)
    tensors = to_diffusers(_with_text_out_proj(drawn), conv)
    ranks = {value.shape[0] for key, value in tensors.items() if key.endswith("lora_A.weight")}
    assert ranks == {max(down.shape[0] for down, _ in drawn.values())}
    for name, (down, up) in drawn.items():
        component, path = split_layer_name(name)
        a, b = tensors[f"{component}.{path}.lora_A.weight"], tensors[f"{component}.{path}.lora_B.weight"]
        assert (a.dim() == 4) == (name in conv), name
        torch.testing.assert_close(as_matrix(b) @ as_matrix(a), up @ down)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=factors(), layout=st.sampled_from(["kohya", "diffusers"]))
def test_diffusers_loading_and_fusing_an_export_adds_exactly_up_times_down(drawn, layout):
    conv = sd1_conv1x1_layers(drawn)
    tensors = (to_kohya if layout == "kohya" else to_diffusers)(_with_text_out_proj(drawn), conv)
    pipe = build_tiny_pipeline(seed=0)
    before = weights(pipe)
    pipe.load_lora_weights(dict(tensors))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    after = weights(pipe)
    for name, (down, up) in drawn.items():
        key = name + ".weight"
        if key not in after:  # older transformers nest CLIP's layers under text_model.
            key = name.replace("text_encoder.", "text_encoder.text_model.") + ".weight"
        added = (after[key] - before[key]).reshape(up.shape[0], down.shape[1])
        torch.testing.assert_close(added, up @ down, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
