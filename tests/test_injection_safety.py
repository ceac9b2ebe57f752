"""What can go wrong around injected adapters: moves and casts, half-failed adds, merge bookkeeping, bad values."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.errors import ConfigError, LowdimError
from lowdim.injection import AdapterLayer
from lowdim.registry import get_registry


def mlp(out: int = 6) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, out))


def randomized(model: nn.Module, space: str = "lora", targets=("0", "2"), **options) -> lowdim.Adapters:
    adapters = lowdim.inject(model, lowdim.get_space(space, **options), list(targets))
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.normal_(0.0, 0.3)
    return adapters


@pytest.mark.parametrize("space", ["lora", "lidb"])
def test_an_injected_model_moves_and_casts_with_its_adapters(space):
    model = mlp()
    adapters = randomized(model, space)
    x = torch.randn(3, 8)
    expected = model(x).double()
    model.to(torch.float64)  # nn.Module.to goes through Module._apply, which a wrapper must not shadow
    assert all(p.dtype == torch.float64 for p in adapters.parameters("default"))
    assert torch.allclose(model(x.double()), expected, atol=1e-5)
    model.half().float().to("cpu")
    assert torch.allclose(model(x), expected.float(), atol=5e-2)


def test_a_layer_the_space_refuses_leaves_the_model_as_it_was():
    model = mlp(out=2)
    x = torch.randn(3, 8)
    before = model(x)
    with pytest.raises(ConfigError, match="layer 2 .*too small for rank 3"):
        lowdim.inject(model, lowdim.get_space("lidb", rank=3, init="gaussian"), ["0", "2"])
    assert lowdim.Adapters(model).names() == []
    assert not any(isinstance(m, AdapterLayer) for m in model.modules())
    assert torch.equal(model(x), before)


@pytest.mark.parametrize("call, message", [
    (lambda a, s: a.add("x", s, []), "select no layer"),
    (lambda a, s: a.add("x", s, ["0"], batch=0), "batch must be a positive integer"),
    (lambda a, s: a.add("x", s, ["0"], seed="a"), "seed must be an integer"),
    (lambda a, s: a.add("x", "lora", ["0"]), "expected a Space instance"),
    (lambda a, s: a.add("x", s, ["re:0["]), "not a valid regular expression"),
    (lambda a, s: a.add("x", s, None), "targets must be a LayerSet, a pattern string"),
    (lambda a, s: a.add("x", s, lowdim.LayerSet("x", ("0",), types=("Linear",))), "unknown layer type 'Linear'"),
])
def test_bad_arguments_to_add_are_one_line_errors(call, message):
    adapters = lowdim.Adapters(mlp())
    with pytest.raises(LowdimError, match=message) as error:
        call(adapters, lowdim.get_space("lora"))
    assert "\n" not in str(error.value) and adapters.names() == []


@pytest.mark.parametrize("spoil", ["disabled", "per-sample"])
def test_merge_and_unload_checks_every_adapter_before_folding_any(spoil):
    model = mlp()
    x = torch.randn(3, 8)
    plain = model(x).detach()
    adapters = randomized(model, targets=("0",))
    adapters.add("b", lowdim.get_space("lora"), ["2"], batch=2 if spoil == "per-sample" else None)
    if spoil == "disabled":
        adapters.disable("b")
    with pytest.raises(LowdimError, match="enable it to merge it|pick one sample first"):
        adapters.merge_and_unload()
    assert adapters.names() == ["default", "b"] and isinstance(model[0], AdapterLayer)
    assert adapters.slots("default")["0"].merged_scale is None  # nothing folded: default can still be removed
    adapters.remove_all()
    assert torch.equal(model(x), plain) and type(model[0]) is nn.Linear  # the base weights were never touched


def test_merge_and_unload_takes_one_name_as_a_string():
    adapters = randomized(mlp(), targets=("0",))
    adapters.add("b", lowdim.get_space("lora"), ["2"])
    adapters.merge_and_unload("default")
    assert adapters.names() == ["b"]


def test_patterns_in_one_string_split_on_commas_outside_a_regex_and_set_scale_splits_alike():
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(12)])
    adapters = lowdim.inject(model, lowdim.get_space("lora"), r"re:1[0-9]{0,1}", name="s")
    assert [layer.name for layer in adapters.info("s").layers] == ["1", "10", "11"]
    adapters.add("t", lowdim.get_space("lora"), "0, 1,2")
    adapters.set_scale("t", 0.5, "0,1")
    assert [slot.scale for slot in adapters.slots("t").values()] == [0.5, 0.5, 1.0]


def test_user_mistakes_around_the_model_are_one_line():
    space = lowdim.get_space("lora")
    with pytest.raises(LowdimError, match=r"the model itself is an nn.Linear.*nn.Sequential\(layer\)"):
        lowdim.inject(nn.Linear(4, 4), space, "*")
    with pytest.raises(LowdimError, match=r"'0' is a Conv2d, which this layer set's types \(conv1x1 not among"):
        lowdim.inject(nn.Sequential(nn.Conv2d(3, 4, 1)), space, lowdim.LayerSet("linears", ("*",)))
    model = nn.Sequential(nn.Linear(4, 4))
    lowdim.inject(model, space, "0")
    for call in (lambda: lowdim.save_adapter(model, "x.safetensors"), lambda: lowdim.load_adapter(model, "x")):
        with pytest.raises(LowdimError, match=r"_adapter\(path, model\): the file's path comes first"):
            call()


def test_merge_refuses_what_it_cannot_honour_and_warns_about_tied_weights():
    model = mlp()
    adapters = randomized(model)
    with pytest.raises(LowdimError, match="part must be 'all' or 'frozen'"):
        adapters.merge("default", part="frozn")
    adapters.disable("default")
    with pytest.raises(LowdimError, match="is disabled; enable it to merge it"):
        adapters.merge("default")
    adapters.enable("default")
    adapters.merge("default")
    with pytest.raises(LowdimError, match="is merged"):
        adapters.disable("default")
    with pytest.raises(LowdimError, match="scale must be a finite number"):
        adapters.set_scale("default", "x")
    with pytest.raises(LowdimError, match="has no layer 'nope'"):
        adapters.delta("default", "nope")

    tied = mlp(out=8)
    tied.register_module("embed", nn.Embedding(16, 8))
    tied.embed.weight = tied[2].weight  # (8, 16) both ways, as an LM head tied to its embeddings
    tied_adapters = randomized(tied, targets=("2",))
    with pytest.warns(UserWarning, match="layer 2 shares its weight with another module"):
        tied_adapters.merge("default")


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(-2.0, 2.0), drift=st.floats(0.01, 1.0), space=st.sampled_from(["lora", "lidb"]))
def test_unmerge_removes_exactly_what_merge_added_even_after_the_params_change(scale, drift, space):
    model = mlp()
    base = {name: value.clone() for name, value in model.state_dict().items()}
    adapters = randomized(model, space)
    adapters.set_scale("default", scale)
    adapters.merge("default")
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.add_(drift)  # e.g. an optimizer step taken by mistake while merged
    adapters.unmerge("default")
    for name, value in lowdim.Adapters(model).model.state_dict().items():
        plain = name.replace(".base_layer", "")
        if plain in base:
            assert torch.allclose(value, base[plain], atol=1e-5), name


def _scalar_fields(config_class) -> list[tuple[str, str]]:
    hints = {f.name: str(f.type) for f in dataclasses.fields(config_class)}
    return [(name, hint) for name, hint in hints.items() if any(k in hint for k in ("int", "float"))]


@pytest.mark.parametrize("space_name", sorted(get_registry().spaces))
def test_every_space_names_an_option_of_the_wrong_type(space_name):
    space_class = get_registry().space_class(space_name)
    for name, hint in _scalar_fields(space_class.config_class):
        for bad in ("abc", True, float("inf")):
            if bad is True and "bool" in hint:
                continue
            if bad == float("inf") and "float" not in hint:
                continue
            with pytest.raises(ConfigError, match=f"{space_name}: .*{name}") as error:
                lowdim.get_space(space_name, **{name: bad})
            assert "\n" not in str(error.value)


def test_strided_or_padded_1x1_convs_are_not_targets():
    model = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2), nn.Conv2d(8, 8, 1, padding=1), nn.Conv2d(8, 8, 1))
    adapters = lowdim.inject(model, lowdim.get_space("lora"), ["*"])
    assert [layer.name for layer in adapters.info("default").layers] == ["2"]


def test_per_sample_mismatches_and_bad_overrides_name_the_layer():
    model = mlp()
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"], batch=3)
    with pytest.raises(LowdimError, match=r"layer 0: per-sample adapters for 3 samples, but the input \(4, 8\)"):
        model(torch.randn(4, 8))
    good = {layer: {k: v.clone() for k, v in p.items()} for layer, p in adapters.tensors("default").items()}
    with pytest.raises(LowdimError, match=r"missing layers \['0'\]"), adapters.override("default", {}):
        pass
    with pytest.raises(LowdimError, match=r"^override of adapter 'default': missing layers \['0'\]$"), \
            adapters.override("default", {}):
        pass  # only the side that is wrong: no "unexpected layers []"
    misspelt = {"0": {**good["0"], "upp": good["0"]["up"]}}  # dropped unsaid, the override would run without it
    with pytest.raises(LowdimError, match=r"layer 0: unexpected tensor 'upp' \(the layer's params: "), \
            adapters.override("default", misspelt):
        pass
    wrong = {"0": {**good["0"], "up": torch.zeros(3, 16, 5)}}
    with pytest.raises(LowdimError, match=r"0.up must have shape \(16, 2\)"), adapters.override("default", wrong):
        pass
    with adapters.override("default", good):
        assert model(torch.randn(3, 8)).shape == (3, 6)


def test_save_adapter_names_extra_metadata_that_is_not_json(tmp_path):
    model = mlp()
    lowdim.inject(model, lowdim.get_space("lora"), ["0"])
    with pytest.raises(LowdimError, match=r"extra\['step'\]: Tensor is not JSON"):
        lowdim.save_adapter(tmp_path / "a.safetensors", model, extra={"step": torch.tensor(3)})
    assert not (tmp_path / "a.safetensors").exists()


def test_a_cast_model_keeps_fp32_bases_so_its_adapter_file_reloads(tmp_path):
    model = mlp()
    adapters = randomized(model, "lidb")
    model.half()
    slot = next(iter(adapters.slots("default").values()))
    assert all(buffer.dtype == torch.float32 for buffer in slot.buffers_dict().values())
    lowdim.save_adapter(tmp_path / "a.safetensors", model)
    fresh = mlp()
    lowdim.load_adapter(tmp_path / "a.safetensors", fresh)  # the basis checksum matches
    assert torch.allclose(fresh(torch.ones(1, 8)), model.float()(torch.ones(1, 8)), atol=1e-2)
