"""An adapter file records which of its layers are token tables (``embedding_layers``), and a load refuses a layer
whose kind in the model is the other one: a file made for a linear layer would otherwise add its update to an
nn.Embedding of the same name and shape, and the reverse (review CH, finding 7). A file without the record (an
older lowdim's) loads as before."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError

WIDTH = 4  # nn.Linear(4, 4) and nn.Embedding(4, 4) both have a 4x4 weight: only their kind tells them apart


def saved(folder: Path, model: nn.Module, targets) -> Path:
    lowdim.inject(model, lowdim.get_space("lora", rank=2, init="gaussian"), targets)
    return lowdim.save_adapter(folder / "a.safetensors", model)


def both_kinds(names) -> lowdim.LayerSet:
    return lowdim.LayerSet("picked", tuple(names), types=("linear", "embedding"))


def layer(embedding: bool) -> nn.Module:
    return nn.Embedding(WIDTH, WIDTH) if embedding else nn.Linear(WIDTH, WIDTH)


def recorded(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata())


TABLE = lowdim.LayerSet("table", ("0",), types=("embedding",))


@pytest.mark.parametrize("made_on, targets, loaded_into", [
    (lambda: nn.Linear(4, 4), ["0"], lambda: nn.Embedding(4, 4)),
    (lambda: nn.Embedding(4, 4), TABLE, lambda: nn.Linear(4, 4)),
], ids=["linear file into an embedding", "embedding file into a linear"])
def test_a_file_into_a_layer_of_the_other_kind_is_one_line_naming_the_layer_and_both_kinds(tmp_path, made_on,
                                                                                           targets, loaded_into):
    path = saved(tmp_path, nn.Sequential(made_on()), targets)
    model = nn.Sequential(loaded_into())
    kind = type(model[0])
    with pytest.raises(AdapterFileError) as refused:
        lowdim.load_adapter(path, model)
    message = str(refused.value)
    assert "\n" not in message and "layer 0" in message and "nn.Embedding" in message and "linear" in message
    assert str(path) in message
    assert not lowdim.Adapters(model).names() and type(model[0]) is kind  # nothing wrapped


def test_a_file_made_for_an_embedding_loads_into_one(tmp_path):
    path = saved(tmp_path, nn.Sequential(nn.Embedding(4, 4)), TABLE)
    table = nn.Sequential(nn.Embedding(4, 4))
    assert lowdim.load_adapter(path, table).name == "default"


def test_a_linear_file_still_loads_into_a_linear(tmp_path):
    path = saved(tmp_path, nn.Sequential(nn.Linear(4, 4)), ["0"])
    assert lowdim.load_adapter(path, nn.Sequential(nn.Linear(4, 4))).name == "default"


def test_every_file_says_which_layers_are_tables_even_when_none_are(tmp_path):
    path = saved(tmp_path, nn.Sequential(nn.Linear(4, 4), nn.Embedding(4, 4)), both_kinds(["0", "1"]))
    assert json.loads(recorded(path)["embedding_layers"]) == ["1"]
    plain = saved(tmp_path, nn.Sequential(nn.Linear(4, 4)), ["0"])
    assert json.loads(recorded(plain)["embedding_layers"]) == []


def test_a_file_without_the_record_loads_as_before(tmp_path):
    """An older lowdim's file (no ``embedding_layers``): the kinds are not known, so it loads where its shapes fit."""
    path = saved(tmp_path, nn.Sequential(nn.Linear(4, 4)), ["0"])
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        metadata = dict(handle.metadata())
    del metadata["embedding_layers"]
    save_file(tensors, str(path), metadata=metadata)
    assert lowdim.load_adapter(path, nn.Sequential(nn.Linear(4, 4))).name == "default"
    assert lowdim.load_adapter(path, nn.Sequential(nn.Embedding(4, 4))).name == "default"


@pytest.mark.parametrize("value", ["not json", '{"0": true}', "[0]", '["nowhere"]'])
def test_a_damaged_record_is_one_line_naming_the_file(tmp_path, value):
    path = saved(tmp_path, nn.Sequential(nn.Linear(4, 4)), ["0"])
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        metadata = {**handle.metadata(), "embedding_layers": value}
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(AdapterFileError) as refused:
        lowdim.load_adapter(path, nn.Sequential(nn.Linear(4, 4)))
    message = str(refused.value)
    assert "\n" not in message and str(path) in message and "embedding_layers" in message
    from lowdim_sd.file_info import describe  # lowdim show: the same words, as its problem row

    assert dict(describe(path).rows)["problem"].startswith(message.removeprefix(f"{path}: "))


kinds = st.lists(st.booleans(), min_size=1, max_size=5)  # per layer: whether it is an nn.Embedding


@settings(max_examples=30, deadline=None)
@given(kinds=kinds, data=st.data())
def test_any_subset_loads_into_the_same_kinds_and_a_swapped_kind_is_named(kinds, data):
    adapted = data.draw(st.lists(st.sampled_from(range(len(kinds))), min_size=1, unique=True), "adapted")
    swapped = data.draw(st.sampled_from(range(len(kinds))), "swapped")
    with tempfile.TemporaryDirectory() as folder:
        path = saved(Path(folder), nn.Sequential(*map(layer, kinds)), both_kinds(map(str, adapted)))
        same = nn.Sequential(*map(layer, kinds))
        assert lowdim.load_adapter(path, same).layers == lowdim.read_adapter(path).layers
        other = nn.Sequential(*(layer(kind != (index == swapped)) for index, kind in enumerate(kinds)))
        if swapped not in adapted:  # a layer the file does not cover may be anything
            assert lowdim.load_adapter(path, other).name == "default"
            return
        with pytest.raises(AdapterFileError) as refused:
            lowdim.load_adapter(path, other)
        message = str(refused.value)
        assert "\n" not in message and f"layer {swapped} " in message and str(path) in message
        assert not lowdim.Adapters(other).names()


class Holder(nn.Module):
    """A model whose layers are named ``module.0``, ``module.1``: what an older lowdim recorded through a
    DataParallel, which loads onto the model inside with that prefix dropped."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.module = inner


def test_a_file_whose_names_lose_a_wrapper_prefix_keeps_its_kinds(tmp_path):
    path = saved(tmp_path, Holder(nn.Sequential(nn.Linear(4, 4), nn.Embedding(4, 4))), both_kinds(["module.*"]))
    assert lowdim.load_adapter(path, nn.Sequential(nn.Linear(4, 4), nn.Embedding(4, 4))).name == "default"
    swapped = nn.Sequential(nn.Embedding(4, 4), nn.Embedding(4, 4))
    with pytest.raises(AdapterFileError, match=r"layer 0 is an nn\.Embedding"):
        lowdim.load_adapter(path, swapped)
    assert not lowdim.Adapters(swapped).names()
