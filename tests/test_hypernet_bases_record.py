"""``save_hypernet`` records the seed of the frozen bases a hypernetwork predicts in, and their checksum.

What users rely on: a hypernetwork made for their own layers, in a space with frozen bases (LiDB), is checked
at load as lowdim_sd's are: its file says which adapter seed the predictions belong to, and a machine that
makes other bases for that seed refuses it instead of turning every prediction into another ΔW. Files and
callers from before (the keys passed in ``metadata``, or none at all) keep working.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from transformers import ViTConfig

import lowdim
from lowdim import functional as F
from lowdim.hyper import HyperConfig, HyperNetwork, load_hypernet, save_hypernet, storage
from lowdim.hyper.storage import read_hypernet

ENCODER = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=16,
                    patch_size=8)
NAMES = ["0", "2", "4", "6", "8"]  # more layers than the checksum probes


def own_model() -> nn.Sequential:
    torch.manual_seed(0)
    layers = []
    for _ in NAMES:
        layers += [nn.Linear(16, 16), nn.ReLU()]
    return nn.Sequential(*layers).requires_grad_(False)


def hypernet_for(space_name: str, seed: int, **options) -> tuple[HyperNetwork, nn.Module]:
    model = own_model()
    info = lowdim.inject(model, lowdim.get_space(space_name, **options), NAMES, seed=seed).info()
    torch.manual_seed(0)
    net = HyperNetwork(HyperConfig(encoder_config=ENCODER, width=32, attention_heads=2), info.space, info.layers)
    return net, model


def checksum_of_injected_bases(model: nn.Module) -> str:
    """The checksum of the bases the user's adapted layers hold, computed as the file's is."""
    slots = [model[int(name)].slots["default"] for name in NAMES[:storage.PROBED_LAYERS]]
    return F.basis_checksum([value.float() for slot in slots for _, value in sorted(slot.buffers_dict().items())])


def extra(path) -> dict:
    return read_hypernet(path).stored["extra"]


def test_the_adapter_seed_and_the_checksum_of_its_bases_are_recorded(tmp_path):
    net, model = hypernet_for("lidb", seed=7, a=8, b=8)
    path = save_hypernet(tmp_path / "h.safetensors", net, {"model": "mine", "layer_set": "0,2"}, adapter_seed=7)
    recorded = extra(path)
    assert recorded["adapter_seed"] == 7
    assert recorded["bases_checksum"] == checksum_of_injected_bases(model)
    assert recorded["bases_checksum"] != checksum_of_injected_bases(hypernet_for("lidb", seed=0, a=8, b=8)[1])
    assert load_hypernet(path, model="mine").metadata["adapter_seed"] == 7


def test_a_machine_that_makes_other_bases_for_the_seed_refuses_the_file(tmp_path, monkeypatch):
    net, _ = hypernet_for("lidb", seed=7, a=8, b=8)
    path = save_hypernet(tmp_path / "h.safetensors", net, adapter_seed=7)
    made_here = storage.bases_checksum
    monkeypatch.setattr(storage, "bases_checksum", lambda space, layers, seed: made_here(space, layers, seed + 1))
    with pytest.raises(lowdim.LowdimError, match="bases this machine makes for seed 7 differ"):
        load_hypernet(path)


def test_a_seed_given_in_metadata_gets_its_checksum_and_one_given_with_its_checksum_is_kept(tmp_path):
    net, model = hypernet_for("lidb", seed=3, a=8, b=8)
    only_seed = save_hypernet(tmp_path / "s.safetensors", net, {"adapter_seed": 3})
    assert extra(only_seed)["bases_checksum"] == checksum_of_injected_bases(model)
    both = save_hypernet(tmp_path / "b.safetensors", net, {"adapter_seed": 3, "bases_checksum": "as recorded"})
    assert extra(both)["bases_checksum"] == "as recorded"  # the caller's record of its training bases


def test_two_different_seeds_are_refused_in_one_line(tmp_path):
    net, _ = hypernet_for("lidb", seed=3, a=8, b=8)
    with pytest.raises(lowdim.LowdimError, match=r"adapter_seed=3 .* metadata's adapter_seed 5") as raised:
        save_hypernet(tmp_path / "h.safetensors", net, {"adapter_seed": 5}, adapter_seed=3)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "h.safetensors").exists()
    with pytest.raises(lowdim.LowdimError, match="adapter_seed 'seven' is no integer"):
        save_hypernet(tmp_path / "h.safetensors", net, adapter_seed="seven")


def test_without_a_seed_a_space_with_bases_warns_and_its_file_still_loads(tmp_path):
    net, _ = hypernet_for("lidb", seed=0, a=8, b=8)
    with pytest.warns(UserWarning, match="no adapter_seed.*cannot check the frozen lidb bases"):
        path = save_hypernet(tmp_path / "h.safetensors", net)
    assert "adapter_seed" not in extra(path) and "bases_checksum" not in extra(path)
    load_hypernet(path)  # a file from before the seed was recorded: loaded unchecked, as before


def test_a_space_without_bases_records_the_seed_and_no_checksum_silently(tmp_path):
    net, _ = hypernet_for("lora", seed=0, rank=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = save_hypernet(tmp_path / "p.safetensors", net)
        seeded = save_hypernet(tmp_path / "s.safetensors", net, adapter_seed=4)
    assert extra(plain) == {}
    assert extra(seeded) == {"adapter_seed": 4}
    load_hypernet(seeded)
