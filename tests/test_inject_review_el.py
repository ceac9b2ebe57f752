"""Review EL, the Python API on models that are not SD: a base weight resized under its adapter, LayerSet's types
against the pattern form's, what ``help()`` teaches, and ``vmap`` over ``functional_call`` without warnings."""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, vmap

import lowdim
from lowdim import functional as F
from lowdim.errors import LowdimError
from lowdim.injection.matching import EMBEDDING, LAYER_TYPES
from lowdim.injection.select import LayerSet

LORA = {"rank": 2, "init": "gaussian"}


# -- 1. a base weight of another shape than its adapter's ---------------------------------------------------
def test_resize_token_embeddings_under_a_tied_lm_head_adapter_is_one_lowdim_error_and_can_be_undone():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50, n_positions=16)
    model = transformers.GPT2LMHeadModel(config).eval()
    lowdim.inject(model, lowdim.get_space("lora", **LORA), ["lm_head"])
    words = r"layer lm_head: its base weight is now 52x32, but adapter 'default' was made for 50x32.*delete\('default"
    with pytest.raises(LowdimError, match=words):  # transformers reads lm_head.weight half-way through
        model.resize_token_embeddings(52)
    with pytest.raises(LowdimError, match=words):  # and the forward says the same, not torch's in-place error
        model(torch.tensor([[1]]))
    lowdim.Adapters(model).delete()  # what the message says to do, after which the resize goes through
    model.resize_token_embeddings(52)
    lowdim.inject(model, lowdim.get_space("lora", **LORA), ["lm_head"])
    assert model(torch.tensor([[51]])).logits.shape == (1, 1, 52)


class Tied(nn.Module):
    """A token table and an output head that share one weight, as a language model's are."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(10, 6)
        self.head = nn.Linear(6, 10, bias=False)
        self.head.weight = self.table.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.table(ids))


@pytest.mark.filterwarnings("ignore:layer head shares its weight")  # merge's own note on tied weights
def test_a_grown_tied_table_names_every_adapter_of_the_head_from_the_weight_the_forward_and_merge():
    model = Tied()
    lowdim.inject(model, lowdim.get_space("lora", **LORA), ["head"], name="a")
    lowdim.inject(model, lowdim.get_space("lidb", a=4, b=4, rank=1, init="gaussian"), ["head"], name="b")
    ids = torch.tensor([[1, 2]])
    assert model(ids).shape == (1, 2, 10)  # the same model before the table grows: no refusal
    bigger = nn.Parameter(torch.randn(12, 6))
    model.table.weight = bigger
    model.head.base_layer.weight = bigger  # tied again, as resize_token_embeddings ties them
    words = r"layer head: its base weight is now 12x6, but adapters 'a' \(10x6\), 'b' \(10x6\) were made for"
    for where in (lambda: model.head.weight, lambda: model(ids), lambda: lowdim.Adapters(model).merge("a")):
        with pytest.raises(LowdimError, match=words):
            where()


def _grown(layer: nn.Module, kind: str) -> nn.Parameter:
    weight = layer.weight
    if kind == "wider input":
        return nn.Parameter(torch.randn(weight.shape[0], weight.shape[1] + 1, *weight.shape[2:]))
    return nn.Parameter(torch.randn(weight.shape[0] + 3, *weight.shape[1:]))


@pytest.mark.parametrize(("layer", "types", "x", "kind"), [
    (nn.Linear(6, 4, bias=False), ("linear",), torch.randn(3, 7), "wider input"),  # no bias to stop the base
    (nn.Linear(6, 4, bias=False), ("linear",), torch.randn(3, 6), "more outputs"),
    (nn.Conv2d(6, 4, 1, bias=False), ("conv1x1",), torch.randn(2, 6, 3, 3), "more outputs"),
    (nn.Embedding(10, 4), (EMBEDDING,), torch.tensor([[1, 2]]), "more rows"),
])
def test_each_layer_kind_refuses_a_base_weight_its_adapter_was_not_made_for(layer, types, x, kind):
    model = nn.Sequential(layer)
    lowdim.inject(model, lowdim.get_space("lora", **LORA), LayerSet("one", ("0",), types=types))
    wrapper = model[0]
    before = tuple(wrapper.base_layer.weight.shape[:2])
    wrapper.base_layer.weight = _grown(wrapper.base_layer, kind)
    now = "x".join(map(str, wrapper.base_layer.weight.shape[:2]))
    words = rf"layer 0: its base weight is now {now}, but adapter 'default' was made for {before[0]}x{before[1]}"
    with pytest.raises(LowdimError, match=words):
        model(x)
    with pytest.raises(LowdimError, match=words):
        wrapper.effective_weight()


# -- 2. LayerSet's default types and the pattern form's -----------------------------------------------------
def _linear_and_conv() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 8), nn.Conv2d(8, 8, 1))


def test_a_layer_set_wildcard_that_leaves_out_1x1_convolutions_says_so():
    space = lowdim.get_space("lora", rank=2)
    with pytest.warns(UserWarning, match=r"targets 'all' also match 1 1x1 convolution \(e\.g\. 1\), which this "
                                         r"layer set's types \(linear\) leave out: add 'conv1x1'"):
        adapters = lowdim.inject(_linear_and_conv(), space, LayerSet("all", ("*",)))
    assert [layer.name for layer in adapters.info().layers] == ["0"]
    model = _linear_and_conv()
    lowdim.inject(model, space, ["0", "1"])  # both wrapped now: the conv inside its wrapper is still left out
    with pytest.warns(UserWarning, match=r"1x1 convolution \(e\.g\. 1\)"):
        lowdim.inject(model, space, LayerSet("all", ("*",)), name="b")


@pytest.mark.parametrize("targets", ["*", ["*"], LayerSet("all", ("*",), types=LAYER_TYPES)])
def test_targets_that_take_1x1_convolutions_adapt_them_without_a_warning(targets):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapters = lowdim.inject(_linear_and_conv(), lowdim.get_space("lora", rank=2), targets)
    assert [layer.name for layer in adapters.info().layers] == ["0", "1"]


def test_layer_set_and_readme_name_every_layer_type_and_the_default():
    doc = inspect.getdoc(LayerSet) or ""
    default = LayerSet("x", ("*",)).types
    assert all(f'"{kind}"' in doc for kind in (*LAYER_TYPES, EMBEDDING))
    assert f"defaults to ``{default!r}``".replace("'", '"') in doc
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    paragraph = next(part for part in readme.split("\n\n") if part.startswith("What can carry an adapter"))
    assert all(f"`{kind}`" in paragraph for kind in (*LAYER_TYPES, EMBEDDING))
    assert f"types={default!r}".replace("'", '"') in paragraph


# -- 3. help() --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("function", [lowdim.inject, lowdim.Adapters.add])
def test_help_of_inject_and_add_says_what_targets_and_each_keyword_take(function):
    doc = inspect.getdoc(function) or ""
    for words in ("``*`` crosses dots", "``re:``", "comma-separated", "LayerSet", "``seed``", "frozen bases",
                  "``scale``", "``batch=K``", "``device``"):
        assert words in doc, words


@pytest.mark.parametrize("method", ["buffers", "delta", "tensors"])
def test_adapters_views_of_tensors_have_a_docstring(method):
    assert inspect.getdoc(getattr(lowdim.Adapters, method))


def test_help_of_get_space_points_to_the_listing_and_its_python_form_works():
    doc = inspect.getdoc(lowdim.get_space) or ""
    assert "lowdim spaces -v" in doc
    names = eval(re.search(r"``(sorted\(lowdim\.get_registry\(\)\.spaces\))``", doc).group(1), {"lowdim": lowdim})
    assert {"lora", "lidb", "stack", "ti"} <= set(names)
    options = eval(re.search(r"``(lowdim\.get_registry\(\)\.space_class.*?)``", doc).group(1), {"lowdim": lowdim})
    assert {"a", "b", "rank"} <= set(options)


# -- 4. vmap over functional_call -------------------------------------------------------------------------
def _mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    model.requires_grad_(False)
    lowdim.inject(model, lowdim.get_space("lora", **LORA), ["0", "2"], seed=1)
    return model


@pytest.mark.parametrize("stacked", ["every param", "the adapter's params"])
@pytest.mark.parametrize("grad", [False, True])
def test_vmap_over_functional_call_warns_nothing_and_gives_each_sample_its_params(stacked, grad):
    model, x = _mlp(), torch.randn(3, 8)
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    mapped = {name: value for name, value in params.items() if stacked == "every param" or ".slots." in name}
    fixed = {name: value for name, value in params.items() if name not in mapped}
    batched = {name: torch.stack([value, value + 0.25]) for name, value in mapped.items()}

    def one(sample_params, inputs):
        return functional_call(model, (sample_params, fixed, buffers), (inputs,))

    with warnings.catch_warnings(record=True) as caught, torch.set_grad_enabled(grad):
        warnings.simplefilter("always")
        out = vmap(one, in_dims=(0, None))(batched, x)
    assert [str(warning.message) for warning in caught] == []
    for sample in range(2):
        own = {name: value[sample] for name, value in batched.items()}
        assert torch.allclose(out[sample], functional_call(model, (own, fixed, buffers), (x,)), atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3),
       st.floats(-2, 2, allow_nan=False), st.integers(0, 2**31 - 1))
def test_lowrank_add_under_vmap_is_each_sample_s_update_added_out_of_place(rows, width_in, width_out, rank, batch,
                                                                            scale, seed):
    generator = torch.Generator().manual_seed(seed)
    x, result = torch.randn(rows, width_in, generator=generator), torch.randn(rows, width_out, generator=generator)
    downs = torch.randn(batch, rank, width_in, generator=generator)
    ups = torch.randn(batch, width_out, rank, generator=generator)
    before = result.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # vmap's fallback for an in-place op warns
        mapped = vmap(lambda down, up: F.lowrank_add_(result, x, down, up, scale))(downs, ups)
    expected = torch.stack([result + scale * (x @ down.T) @ up.T for down, up in zip(downs, ups, strict=True)])
    assert torch.allclose(mapped, expected, atol=1e-5)
    assert torch.equal(result, before)  # one output for all the samples: none of them writes into it
