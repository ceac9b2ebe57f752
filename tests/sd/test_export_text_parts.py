"""An export whose text-encoder part holds no attention out_proj (a `--layers` glob such as
`text_encoder.*k_proj` or `text_encoder.*mlp.*`) still loads in diffusers' own loader and draws what lowdim
draws: diffusers 0.42 infers a text-encoder LoRA's key style from its out_proj keys, and without one it refuses
the file (or drops layers silently), so the export carries a zero out_proj LoRA, which changes no picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import lowdim
from lowdim_sd.export import export_adapter
from lowdim_sd.tiny import build_tiny_pipeline

pytest.importorskip("peft", reason="diffusers' load_lora_weights needs the peft backend (pip install peft)")
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")]

TEXT_PARTS = {
    "k and v": ["unet.*attn2.to_k", "text_encoder.*k_proj", "text_encoder.*v_proj"],
    "q alone": ["text_encoder.*q_proj"],
    "q and mlp": ["text_encoder.*q_proj", "text_encoder.*mlp.fc1", "text_encoder.*mlp.fc2"],
    "mlp alone": ["text_encoder.*mlp.fc1", "text_encoder.*mlp.fc2"],
    "fc2 alone": ["text_encoder.*mlp.fc2"],  # narrows: the zero out_proj takes fc2's output width, not its input's
}


def draw(pipe) -> np.ndarray:
    generator = torch.Generator().manual_seed(7)
    return pipe("a photo of a face", num_inference_steps=3, height=16, width=16, generator=generator,
                output_type="np").images


@pytest.fixture(scope="module")
def base_images() -> np.ndarray:
    return draw(build_tiny_pipeline(seed=0))


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
@pytest.mark.parametrize("part", sorted(TEXT_PARTS))
def test_a_text_part_without_out_proj_loads_in_diffusers_and_draws_the_lowdim_images(part, fmt, base_images,
                                                                                       tmp_path):
    pipe = build_tiny_pipeline(seed=0)
    components = nn.ModuleDict({"unet": pipe.unet, "text_encoder": pipe.text_encoder})
    adapters = lowdim.inject(components, lowdim.get_space("lora", rank=2), TEXT_PARTS[part], seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in adapters.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 2.0)
    expected = draw(pipe)
    assert np.abs(expected - base_images).max() > 0.05  # the adapter matters, or equal pictures prove nothing
    source = lowdim.save_adapter(tmp_path / "me.safetensors", components)
    out = export_adapter(source, tmp_path / f"me.{fmt}.safetensors", fmt, dtype="fp32")
    fresh = build_tiny_pipeline(seed=0)
    fresh.load_lora_weights(str(out))
    assert np.abs(draw(fresh) - expected).max() < 1e-3
    added = {k: v for k, v in load_file(out).items() if "out_proj" in k and not k.endswith(".alpha")}
    assert added and all(not value.any() for value in added.values())  # zero: no picture changes
