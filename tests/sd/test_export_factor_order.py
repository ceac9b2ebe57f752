"""An exported LoRA holds each factor under its own key and in its own orientation: down (rank, in) and up
(out, rank), with up @ down (times kohya's alpha / rank) the update the adapter makes to the layer.

A fixed, fast case beside test_export_read_by_diffusers.py, whose property is the only other check of a swapped or
transposed pair and takes minutes to fail while hypothesis shrinks. The layer is not square (in != out) and the
factors are random, so a swap or a transpose changes the shapes and the product."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import lowdim
from lowdim_sd.export import export_adapter

RANK, IN, OUT = 2, 6, 4
# An SD 1.x UNet layer's name (a feed-forward output, which narrows in SD too): kohya's reader restores its module.
LAYER = "unet.down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2"
KEYS = {
    "diffusers": ("unet.down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.lora_A.weight",
                  "unet.down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.lora_B.weight"),
    "kohya": ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_2.lora_down.weight",
              "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_2.lora_up.weight"),
}


def _one_layer_model() -> tuple[nn.Module, nn.Linear]:
    """Modules nested as LAYER names them, with one Linear(IN, OUT) at its end."""
    layer = nn.Linear(IN, OUT)
    module: nn.Module = layer
    for part in reversed(LAYER.split(".")):
        module = nn.ModuleDict({part: module})
    return module, layer


def _update_and_file(folder) -> tuple[torch.Tensor, object]:
    """The adapter's ΔW (out, in) as the adapted layer computes it, and its saved adapter file."""
    model, layer = _one_layer_model()
    eye = torch.eye(IN)
    with torch.no_grad():
        base = layer(eye)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=RANK), [LAYER])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in adapters.parameters("default"):  # LoRA's up starts at 0: random, non-symmetric factors
            param.copy_(torch.randn(param.shape, generator=generator))
        adapted = model.get_submodule(LAYER)(eye)
    update = (adapted - base).T  # row i of eye @ ΔW.T is ΔW's column i
    assert update.abs().max() > 0.1  # an update to compare
    return update, lowdim.save_adapter(folder / "one.safetensors", adapters, token="zwx")


@pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")
@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_exported_down_and_up_have_their_shapes_and_multiply_to_the_adapters_update(tmp_path, fmt):
    update, adapter = _update_and_file(tmp_path)
    out = export_adapter(adapter, tmp_path / f"{fmt}.safetensors", fmt=fmt, dtype="fp32")
    tensors = load_file(out)
    down_key, up_key = KEYS[fmt]
    down, up = tensors[down_key], tensors[up_key]
    assert (tuple(down.shape), tuple(up.shape)) == ((RANK, IN), (OUT, RANK))
    scale = float(tensors[down_key.replace("lora_down.weight", "alpha")]) / RANK if fmt == "kohya" else 1.0
    torch.testing.assert_close(scale * (up @ down), update, atol=1e-5, rtol=1e-5)
