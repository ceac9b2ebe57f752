"""Layer names in lowdim files: any name torch gives a module round-trips (a ModuleDict key "to q", a peft adapter
named "my adapter"), adapters saved before the name rule was written still load, and the few names a file cannot
hold (control characters, over 512 characters) are refused when the adapter is injected, before any training
(review BK1)."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import lowdim
from lowdim.errors import LowdimError


class Blocks(nn.Module):
    """Modules named by ModuleDict keys that hold a space and punctuation, as torch allows."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleDict({"to q": nn.Linear(8, 8), "attn:v": nn.Linear(8, 8), "conv+bn/1": nn.Linear(8, 8)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(module(x) for module in self.blocks.values())


def randomized(adapters: lowdim.Adapters) -> None:
    """Values as after training (a fresh LoRA adapter is zero, which would load onto anything)."""
    with torch.no_grad():
        for param in adapters.parameters():
            param.copy_(torch.randn_like(param))


def test_module_dict_keys_with_a_space_round_trip(tmp_path):
    model = Blocks()
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["blocks.*"], seed=0)
    randomized(adapters)
    x = torch.randn(3, 8)
    with torch.no_grad():
        expected = model(x)
    path = lowdim.save_adapter(tmp_path / "blocks.safetensors", model)
    fresh = Blocks()
    lowdim.load_adapter(path, fresh)
    assert sorted(lowdim.Adapters(fresh).slots()) == ["blocks.attn:v", "blocks.conv+bn/1", "blocks.to q"]
    with torch.no_grad():
        assert torch.allclose(fresh(x), expected)


def test_a_peft_adapter_name_with_a_space_round_trips(tmp_path):
    peft = pytest.importorskip("peft")

    def peft_model() -> nn.Module:
        torch.manual_seed(0)
        base = nn.Sequential()
        base.add_module("query", nn.Linear(8, 8))
        return peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["query"]), adapter_name="my adapter")

    model = peft_model()
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=1), ["*.lora_A.my adapter"], seed=0)
    (layer,) = adapters.slots()
    assert layer.endswith("query.lora_A.my adapter")
    randomized(adapters)
    x = torch.randn(3, 8)
    with torch.no_grad():
        expected = model(x)
    path = lowdim.save_adapter(tmp_path / "peft.safetensors", model)
    fresh = peft_model()
    lowdim.load_adapter(path, fresh)
    with torch.no_grad():
        assert torch.allclose(fresh(x), expected)


def test_an_adapter_saved_before_the_name_rule_with_a_spaced_name_still_loads(tmp_path):
    # Written with safetensors directly, as lowdim 0.1.0 (ef382d5) wrote it: zlib-packed layers, flat params.
    layers = [["blocks.to q", 8, 8], ["blocks.attn:v", 8, 8], ["blocks.conv+bn/1", 8, 8]]
    packed = "zlib:" + base64.b64encode(zlib.compress(json.dumps(layers, separators=(",", ":")).encode(), 9)).decode()
    torch.manual_seed(1)
    down, up = torch.randn(3 * 2 * 8), torch.randn(3 * 8 * 2)
    metadata = {"format": "lowdim.adapter", "format_version": "1", "lowdim_version": "0.1.0", "space": "lora",
                "space_config": '{"rank":2,"alpha":null,"init":"zero","init_std":0.02}', "layers": packed,
                "seed": "0", "basis_checksum": "", "base_model": "", "adapter_name": "default", "dtype": "fp32",
                "token": "", "num_params": "96", "extra": "{}", "layer_set": "blocks.*"}
    path = tmp_path / "old.safetensors"
    save_file({"down": down, "up": up}, str(path), metadata=metadata)
    model = Blocks()
    lowdim.load_adapter(path, model)
    slot = lowdim.Adapters(model).slots()["blocks.to q"]
    assert torch.equal(slot.tensors()["down"].flatten(), down[:16])


@pytest.mark.parametrize("key", ["a\nb", "bell\x07", "del\x7f", "c1\x85", "line\u2028sep", "x" * 600])
def test_a_name_no_file_can_hold_is_refused_at_inject_before_training(key):
    model = nn.ModuleDict({key: nn.Linear(4, 4), "fine": nn.Linear(4, 4)})  # torch takes every one of these keys
    with pytest.raises(LowdimError, match=r"adapter 'default' layer '.*': .*rename that module") as refused:
        lowdim.inject(model, lowdim.get_space("lora", rank=1), ["*"], seed=0)
    message = str(refused.value)
    assert message.isprintable() and len(message) < 1000  # printed escaped (and cut), never raw
    assert not lowdim.Adapters(model).names() and isinstance(model["fine"], nn.Linear)  # the model is untouched


def test_a_refused_name_is_still_refused_on_save(tmp_path):
    from lowdim.filecheck import check_savable_names
    from lowdim.spaces.base import LayerSpec

    with pytest.raises(LowdimError, match=r"adapter 'x' layer 'a\\nb': .*control character"):
        check_savable_names([LayerSpec("a\nb", 4, 4)], "adapter 'x'")
    check_savable_names([LayerSpec("blocks.to q", 4, 4)], "adapter 'x'")


def test_written_layer_names_are_read_back_verbatim(tmp_path):
    path = tmp_path / "names.safetensors"
    model = Blocks()
    randomized(lowdim.inject(model, lowdim.get_space("lora", rank=2), ["blocks.*"], seed=0))
    lowdim.save_adapter(path, model)
    assert [layer.name for layer in lowdim.read_adapter(Path(path)).layers] == [
        "blocks.to q", "blocks.attn:v", "blocks.conv+bn/1"]
