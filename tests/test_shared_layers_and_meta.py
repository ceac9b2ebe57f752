"""A layer held under two names is one layer, adapted on every call; a model on the meta device is refused
by load and save in one line, and a load that fails leaves no half-filled adapter behind."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError
from lowdim.injection import AdapterLayer


class Shared(nn.Module):
    """One Linear called twice, under two names, as in weight-shared blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = self.a
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(torch.relu(self.a(x))))


def shared_model(seed: int = 0) -> Shared:
    torch.manual_seed(seed)
    return Shared().requires_grad_(False)


def randomize(adapters: lowdim.Adapters, std: float) -> None:
    with torch.no_grad():
        for param in adapters.parameters():
            param.normal_(0.0, std)


@settings(max_examples=20, deadline=None)
@given(space=st.sampled_from(["lora", "lidb"]), seed=st.integers(0, 2**16), std=st.floats(0.05, 1.0),
       scale=st.floats(-2.0, 2.0))
def test_an_update_on_a_layer_held_twice_acts_on_both_calls_so_merging_keeps_the_output(space, seed, std, scale):
    model, x = shared_model(), torch.randn(3, 4)
    plain = model(x)
    adapters = lowdim.inject(model, lowdim.get_space(space, **({"a": 4, "b": 4} if space == "lidb" else {})), ["a"],
                             seed=seed, scale=scale)
    randomize(adapters, std)
    assert model.a is model.b and isinstance(model.b, AdapterLayer)
    unmerged = model(x)
    adapters.merge()
    with torch.no_grad():  # evaluated, as a merged model is: with grad on lowdim warns "unmerge it before training"
        assert torch.allclose(model(x), unmerged, atol=1e-5)
    adapters.delete()
    assert model.a is model.b and type(model.b) is nn.Linear
    assert torch.allclose(model(x), plain, atol=1e-5)


def test_a_layer_held_twice_saves_once_and_loads_into_both_places(tmp_path):
    model, x = shared_model(), torch.randn(3, 4)
    randomize(lowdim.inject(model, lowdim.get_space("lora", rank=2), ["a"], seed=1), 0.5)
    path = lowdim.save_adapter(tmp_path / "shared.safetensors", model)
    fresh = shared_model()
    info = lowdim.load_adapter(path, fresh)
    assert [layer.name for layer in info.layers] == ["a"] and fresh.a is fresh.b
    assert torch.equal(fresh(x), model(x))


def test_merging_a_layer_held_twice_is_no_tied_weight_but_a_weight_two_modules_hold_still_warns(recwarn):
    model = shared_model()
    randomize(lowdim.inject(model, lowdim.get_space("lora"), ["a"]), 0.3)
    lowdim.Adapters(model).merge()
    assert not [w for w in recwarn if "shares its weight" in str(w.message)]
    tied = shared_model()
    tied.head.weight = nn.Parameter(torch.randn(2, 4))
    tied.register_module("embed", nn.Embedding(2, 4))
    tied.embed.weight = tied.head.weight
    lowdim.inject(tied, lowdim.get_space("lora"), ["head"])
    with pytest.warns(UserWarning, match="layer head shares its weight with another module"):
        lowdim.Adapters(tied).merge()


@pytest.fixture
def saved(tmp_path):
    model = shared_model()
    randomize(lowdim.inject(model, lowdim.get_space("lidb", a=4, b=4), ["a", "head"], seed=5), 0.3)
    return lowdim.save_adapter(tmp_path / "real.safetensors", model)


@pytest.mark.parametrize("space", ["lidb", "lora"])
def test_loading_into_a_model_on_the_meta_device_is_one_line_and_leaves_no_adapter(tmp_path, space):
    model = shared_model()
    lowdim.inject(model, lowdim.get_space(space, **({"a": 4, "b": 4} if space == "lidb" else {})), ["a", "head"])
    path = lowdim.save_adapter(tmp_path / f"{space}.safetensors", model)
    with torch.device("meta"):
        empty = Shared()
    with pytest.raises(AdapterFileError, match=r"layer a of the model is on the meta device \(no weights\): load the "
                                               r"model's weights first"):
        lowdim.load_adapter(path, empty)
    assert lowdim.Adapters(empty).names() == [] and type(empty.a) is nn.Linear


def test_a_load_that_fails_after_the_adapter_is_added_takes_it_away_again(saved, monkeypatch):
    model = shared_model()

    def broken(self, name, tensors):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(lowdim.Adapters, "load_tensors", broken)
    with pytest.raises(RuntimeError, match="disk gone"):
        lowdim.load_adapter(saved, model)
    assert lowdim.Adapters(model).names() == [] and type(model.a) is nn.Linear
    monkeypatch.undo()
    assert lowdim.load_adapter(saved, model).name == "default"  # the retry is not blocked by a leftover


def test_saving_an_adapter_whose_params_are_on_the_meta_device_is_one_line(tmp_path):
    with torch.device("meta"):
        model = Shared()
    lowdim.inject(model, lowdim.get_space("lidb", a=4, b=4), ["a"])
    with pytest.raises(AdapterFileError, match="layer a: its params are on the meta device and hold no values"):
        lowdim.save_adapter(tmp_path / "meta.safetensors", model)
    assert not (tmp_path / "meta.safetensors").exists()


@pytest.mark.parametrize(("dtype", "advice"), [("fp32", "; retrain"), ("fp16", "; save in fp32, or retrain")])
def test_a_nan_param_is_refused_with_advice_that_fits_the_dtype(tmp_path, dtype, advice):
    model = shared_model()
    adapters = lowdim.inject(model, lowdim.get_space("lora"), ["a"])
    with torch.no_grad():
        adapters.parameters()[0].fill_(float("nan"))
    with pytest.raises(AdapterFileError) as refused:
        lowdim.save_adapter(tmp_path / "nan.safetensors", model, dtype=dtype)
    assert str(refused.value).endswith(advice)
