"""Review EL 1 and EN 7, left open: save_adapter of an adapter whose base weight was resized under it is refused
before anything is written, and a plain pattern's error speaks of the pattern, not of a layer set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import LowdimError

LORA = {"rank": 2, "init": "gaussian"}


def _nothing_written(folder: Path) -> None:
    assert sorted(path.name for path in folder.iterdir()) == []  # no file, no hidden temp file either


# -- EL 1: save_adapter of an adapter made for another shape than its layer's weight ---------------------------
def test_save_adapter_refuses_a_tied_gpt2_lm_head_adapter_after_resize_token_embeddings(tmp_path):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50, n_positions=16)
    model = transformers.GPT2LMHeadModel(config).eval()
    assert model.lm_head.weight is model.transformer.wte.weight  # tied, as GPT-2 ships
    lowdim.inject(model, lowdim.get_space("lora", **LORA), ["lm_head"])
    with pytest.raises(LowdimError):  # transformers grows wte (and so lm_head's base) before it reads lm_head.weight
        model.resize_token_embeddings(52)
    assert model.lm_head.base_layer.weight.shape == (52, 32)
    path = tmp_path / "adapter.safetensors"
    words = r"^layer lm_head: its base weight is now 52x32, but adapter 'default' was made for 50x32 .*delete\('default"
    with pytest.raises(LowdimError, match=words):
        lowdim.save_adapter(path, model)
    _nothing_written(tmp_path)


def test_save_adapter_refuses_only_the_adapter_whose_linear_weight_was_replaced_by_a_bigger_one(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3))
    lowdim.inject(model, lowdim.get_space("lora", **LORA), "0", name="old")
    model[0].base_layer.weight = nn.Parameter(torch.randn(5, 4))
    with pytest.raises(LowdimError, match=r"^layer 0: its base weight is now 5x4, but adapter 'old' was made for 3x4"):
        lowdim.save_adapter(tmp_path / "old.safetensors", model, "old")
    _nothing_written(tmp_path)
    # An adapter added after the change fits the layer as it is now: its save is not refused for the other's sake.
    lowdim.inject(model, lowdim.get_space("lora", **LORA), "0", name="new")
    saved = lowdim.save_adapter(tmp_path / "new.safetensors", model, "new")
    assert [(layer.out_features, layer.in_features) for layer in lowdim.read_adapter(saved).layers] == [(5, 4)]


# -- EN 7: an embedding a plain pattern names ---------------------------------------------------------------
class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.conv = nn.Conv2d(4, 4, 1)
        self.emb = nn.Embedding(10, 4)


@pytest.mark.parametrize("targets", ["emb", ["lin", "emb"]], ids=["string", "list"])
def test_a_plain_pattern_on_an_embedding_names_the_types_patterns_take_and_the_layer_set_to_pass(targets):
    space = lowdim.get_space("lora", **LORA)
    with pytest.raises(LowdimError) as refused:
        lowdim.inject(Mixed(), space, targets)
    message = str(refused.value)
    assert "layer set" not in message  # the user gave none
    assert "'emb' is an Embedding, which patterns given as a string or list leave out (they take linear and " \
           "conv1x1 layers)" in message
    suggested = re.search(r"lowdim\.LayerSet\(.*?\)\)", message)
    assert suggested is not None, message
    layer_set = eval(suggested.group(0), {"lowdim": lowdim})  # the call the line suggests, as the user would paste it
    model = Mixed()
    lowdim.inject(model, space, layer_set)
    wanted = ["emb"] if isinstance(targets, str) else ["lin", "emb"]
    assert sorted(layer.name for layer in lowdim.Adapters(model).info().layers) == sorted(wanted)


def test_a_layer_set_that_leaves_embeddings_out_keeps_its_words():
    with pytest.raises(LowdimError, match=r"'emb' is an Embedding, which this layer set's types \(embedding not among "
                                          r"them\) leave out\); real names"):
        lowdim.inject(Mixed(), lowdim.get_space("lora", **LORA), lowdim.LayerSet("mine", ("emb",)))
