"""Loading an adapter file into a model that another library has wrapped: the refusal names the wrapper and what to
do, and never says the file "was made for" another model when it was made for this one.

peft's LoRA layers replace the layers a file names (review AD1); peft's PeftModel puts the whole model under
``base_model.model.`` (AE5); accelerate's sequential offload leaves the layers on the meta device while its hooks
hold the weights (AD5). A plugin space whose bases come from something other than the seed fails its checksum on
every machine, its own included (AG5).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError

peft = pytest.importorskip("peft")


def toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 8)).requires_grad_(False)


def saved(tmp_path: Path, layers: list[str], space: str = "lidb", **options) -> Path:
    model = toy()
    adapters = lowdim.inject(model, lowdim.get_space(space, **options), layers, seed=3)
    with torch.no_grad():
        for param in adapters.parameters():
            param.copy_(torch.randn_like(param))
    return lowdim.save_adapter(tmp_path / "me.safetensors", model, base_model="toy")


def test_layers_peft_wraps_are_named_as_peft_s_with_what_to_do_not_as_another_model(tmp_path):
    path = saved(tmp_path, ["0", "2"])
    model = peft.inject_adapter_in_model(peft.LoraConfig(r=2, target_modules=["0", "2"]), toy())
    with pytest.raises(AdapterFileError) as error:
        lowdim.load_adapter(path, model)
    message = str(error.value)
    assert message.startswith(f"{path}: the model's layer 0 (and 1 more of the file's layers) is peft's LoRA layer")
    assert "merge_and_unload()" in message and "pipe.fuse_lora()" in message
    assert "was made for" not in message and "missing in model" not in message
    assert "target other layers" not in message  # inject's advice: a file's layers are what they are
    assert "\n" not in message and lowdim.Adapters(model).names() == []
    peft_model = peft.inject_adapter_in_model(peft.LoraConfig(r=2, target_modules=["2"]), toy())
    with pytest.raises(AdapterFileError, match=r"me\.safetensors: the model's layer 2 is peft's LoRA layer \(peft\."):
        lowdim.load_adapter(path, peft_model)


def test_a_layer_of_another_kind_under_the_file_s_name_is_named_and_the_file_blamed(tmp_path):
    path = saved(tmp_path, ["0", "2"])
    other = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.LayerNorm(24))
    with pytest.raises(AdapterFileError, match=r"was made for toy and does not fit this model: 2 \(in the model: a "
                                               r"LayerNorm\)$"):
        lowdim.load_adapter(path, other)


def test_a_peft_model_wrapping_the_same_model_gets_the_way_in_not_another_model(tmp_path):
    path = saved(tmp_path, ["2"])
    wrapped = peft.get_peft_model(toy(), peft.LoraConfig(r=2, target_modules=["0"]))
    with pytest.raises(AdapterFileError) as error:
        lowdim.load_adapter(path, wrapped)
    message = str(error.value)
    assert "was made for" not in message and "missing in model" not in message
    assert "'base_model.model.2'" in message and "get_base_model()" in message
    lowdim.load_adapter(path, wrapped.get_base_model())  # the way in it names works, peft's LoRA beside it
    plain = toy()
    lowdim.load_adapter(path, plain)
    x = torch.randn(3, 16)
    with torch.no_grad(), wrapped.disable_adapter():
        assert torch.allclose(wrapped(x), plain(x), atol=1e-6)


def test_a_model_held_inside_another_module_is_pointed_to_by_its_name(tmp_path):
    path = saved(tmp_path, ["0", "2"])
    holder = nn.ModuleDict({"net": toy()})
    with pytest.raises(AdapterFileError, match=r"under 'net\.' \(its layers are named 'net\.0', the file's "
                                               r"'0'\): load into model\.get_submodule\('net'\)$"):
        lowdim.load_adapter(path, holder)


def test_layers_offloaded_by_accelerate_name_the_offload_not_missing_weights(tmp_path):
    accelerate = pytest.importorskip("accelerate")
    path = saved(tmp_path, ["0", "2"])
    model = accelerate.cpu_offload(toy(), execution_device="cpu")
    assert model[0].weight.is_meta  # the hooks hold the weights
    with pytest.raises(AdapterFileError, match=r"layer 0 of the model is on the meta device because accelerate's "
                                               r"offload hooks hold its weights") as error:
        lowdim.load_adapter(path, model)
    assert "load the model's weights first" not in str(error.value)
    assert "remove_hook_from_submodules(model)" in str(error.value)
    assert lowdim.Adapters(model).names() == []


class Block(nn.Module):
    """A block a device_map offloads whole (``preload_module_classes``): accelerate hooks it, not its layers."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.outer = nn.Linear(16, 24), nn.Linear(24, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.relu(self.inner(x)))


def test_layers_of_a_block_a_device_map_offloads_name_the_offload_not_missing_weights(tmp_path):
    accelerate = pytest.importorskip("accelerate")
    torch.manual_seed(0)
    made = nn.Sequential(Block()).requires_grad_(False)
    lowdim.inject(made, lowdim.get_space("lidb"), ["0.inner", "0.outer"], seed=3)
    path = lowdim.save_adapter(tmp_path / "me.safetensors", made, base_model="toy")
    model = nn.Sequential(Block()).requires_grad_(False)
    accelerate.dispatch_model(model, device_map={"0": "disk"}, main_device="cpu", offload_dir=tmp_path / "offload",
                              preload_module_classes=["Block"])
    assert model[0].inner.weight.is_meta and not hasattr(model[0].inner, "_hf_hook")  # the block's hook holds it
    with pytest.raises(AdapterFileError, match=r"layer 0.inner of the model is on the meta device because "
                                               r"accelerate's offload hooks hold its weights") as error:
        lowdim.load_adapter(path, model)
    assert "load the model's weights first" not in str(error.value)
    assert lowdim.Adapters(model).names() == []


def test_bases_that_change_for_a_plugin_space_name_the_space_and_its_package(tmp_path, monkeypatch):
    from lowdim_vera.space import VeraSpace

    path = saved(tmp_path, ["0", "2"], "vera")
    original = VeraSpace.make_buffers
    monkeypatch.setattr(VeraSpace, "make_buffers", lambda self, layer, seed: original(self, layer, seed + 1))
    expected = (r"checksum mismatch\); re-save it with store_bases=True on the original machine, or space 'vera' "
                r"\(package lowdim-vera\) makes its bases from something other than the seed")
    with pytest.raises(AdapterFileError, match=expected):
        lowdim.load_adapter(path, toy())
    with pytest.raises(AdapterFileError, match=expected):  # export reads the same check
        lowdim.read_adapter(path).lora_factors()


def test_bases_that_change_for_lowdim_s_own_space_blame_the_platform_alone(tmp_path, monkeypatch):
    from lowdim.spaces.lidb import LidbSpace

    path = saved(tmp_path, ["0", "2"])
    original = LidbSpace.make_buffers
    monkeypatch.setattr(LidbSpace, "make_buffers", lambda self, layer, seed: original(self, layer, seed + 1))
    with pytest.raises(AdapterFileError, match=r"store_bases=True on the original machine$"):
        lowdim.load_adapter(path, toy())
