"""The bound on JSON nesting (``json_text.MAX_NESTING``) sits far above what real tools write (review BQ4): the
nesting of the JSON in files lowdim, diffusers and transformers write is measured here (a tiny pipeline's configs,
tokenizer files and model index; an adapter's metadata after two rank relaxations, lowdim's deepest space config; a
hypernetwork's metadata; a weight folder's index and its shard's metadata) and must stay a small fraction of it.
A reader that refused a genuine file would refuse a user's model or weights with 'nested too deeply'."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn
from transformers import ViTConfig

import lowdim
from lowdim import json_text
from lowdim.hyper import HyperConfig, HyperNetwork, save_hypernet

pytestmark = pytest.mark.usefixtures("one_thread")
FAR_BELOW = json_text.MAX_NESTING // 4  # a tool that nests 25 levels would be news; none comes near


def nesting(value: object) -> int:
    """Levels of lists and objects in a JSON value (a scalar: 0)."""
    if isinstance(value, dict):
        return 1 + max((nesting(child) for child in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(child) for child in value), default=0)
    return 0


def metadata_nesting(path) -> dict[str, int]:
    """Each metadata field of a safetensors file that holds JSON, with its nesting."""
    with safe_open(str(path), framework="pt") as opened:
        metadata = opened.metadata() or {}
    found = {}
    for key, text in metadata.items():
        try:
            found[key] = nesting(json.loads(text))
        except ValueError:  # plain text (a name, a checksum) or zlib-packed: no JSON to nest
            continue
    return found


def check_far_below(depths: dict[str, int]) -> None:
    assert depths, "nothing measured"
    deepest = max(depths, key=depths.get)
    assert depths[deepest] <= FAR_BELOW, f"{deepest} nests {depths[deepest]} levels"


def test_a_tiny_pipeline_s_diffusers_and_transformers_files(tiny_sd):
    depths = {str(path.relative_to(tiny_sd)): nesting(json.loads(path.read_text()))
              for path in sorted(tiny_sd.rglob("*.json"))}
    assert {"model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
            "text_encoder/config.json"} <= set(depths)
    assert max(depths.values()) >= 2  # measured, not an empty folder: model_index holds lists
    check_far_below(depths)
    for depth in depths.values():
        text = "[" * depth + "]" * depth
        assert json_text.loads(text) == json.loads(text)  # what is read at that depth today still is


def test_an_adapter_relaxed_twice_lowdim_s_deepest_space_config(tmp_path):
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)).requires_grad_(False)
    adapters = lowdim.inject(model, lowdim.get_space("lidb", a=4, b=3), ["0", "2"], seed=1)
    lowdim.relax_rank(adapters, "default", "once", lowdim.get_space("lora", rank=2), merge_frozen=False)
    lowdim.relax_rank(adapters, "once", "twice", lowdim.get_space("lora", rank=2), merge_frozen=False)
    path = lowdim.save_adapter(tmp_path / "a.safetensors", adapters, "twice", extra={"note": {"a": [1]}})
    depths = metadata_nesting(path)
    assert depths["space_config"] >= 6  # a stack of a stack: components, a component, its config, ... twice
    check_far_below(depths)
    lowdim.read_adapter(path, model)


def test_a_hypernetwork_s_metadata(tmp_path):
    encoder = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        image_size=16, patch_size=8)
    layers = [lowdim.LayerSpec("0", 8, 8), lowdim.LayerSpec("2", 4, 8)]
    torch.manual_seed(0)
    net = HyperNetwork(HyperConfig(encoder_config=encoder, width=32, attention_heads=2),
                       lowdim.get_space("lidb", a=4, b=3), layers)
    check_far_below(metadata_nesting(save_hypernet(tmp_path / "h.safetensors", net, adapter_seed=1)))


def test_a_weight_folder_s_index_and_shard(weight_folders, tmp_path):
    folder = weight_folders(tmp_path, "w", 2, seed=3, steps=1)
    depths = {"index.json": nesting(json.loads((folder / "index.json").read_text()))}
    for shard in sorted(folder.glob("shard-*.safetensors")):
        depths.update({f"{shard.name}:{key}": depth for key, depth in metadata_nesting(shard).items()})
    assert depths["index.json"] >= 3  # identities, an entry, its images
    check_far_below(depths)
