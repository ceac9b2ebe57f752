"""``lowdim show`` on an adapter of a model that is not Stable Diffusion (an MLP, a language model) proposes the
Python line that uses it, not a `lowdim generate` command that refuses its layers: SD's layers are named
``unet.`` / ``text_encoder.``, as `lowdim export` tells them apart."""

from __future__ import annotations

import pytest
from torch import nn

import lowdim
from lowdim_cli.main import main
from lowdim_sd.file_info import describe


def saved(tmp_path, model: nn.Module, layers: list[str], **save) -> str:
    lowdim.inject(model, lowdim.get_space("lora", rank=1), layers)
    return lowdim.save_adapter(tmp_path / "a.safetensors", model, **save)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(4, 4)


@pytest.mark.parametrize(("make", "layers"), [
    (lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)), ["0", "2"]),
    (lambda: nn.ModuleDict({"model": nn.ModuleDict({"layers": nn.ModuleList([nn.ModuleDict(
        {"self_attn": Attention()})])})}), ["model.layers.0.self_attn.q_proj"]),
])
def test_an_adapter_of_another_model_is_used_from_python(tmp_path, capsys, make, layers):
    path = saved(tmp_path, make(), layers, base_model="tiny-llama")
    assert describe(path).use == f"lowdim.load_adapter({str(path)!r}, model)"
    assert main(["show", str(path)]) == 0
    said = capsys.readouterr().out
    assert f"use it: lowdim.load_adapter({str(path)!r}, model)" in said and "lowdim generate" not in said


def test_an_adapter_of_stable_diffusions_layers_keeps_its_generate_command(tmp_path):
    model = nn.ModuleDict({"unet": nn.Sequential(nn.Linear(4, 4)), "text_encoder": nn.Sequential(nn.Linear(4, 4))})
    path = saved(tmp_path, model, ["unet.0", "text_encoder.0"], base_model="tinyfaces")
    assert describe(path).use.startswith(f"lowdim generate -m tinyfaces -a {path} ")
