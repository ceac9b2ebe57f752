"""The contract every registered space keeps, plugin spaces included: the shared suite.

Each property draws a random layer shape, a random valid config (``Space.sample_config``), a
seed and a dtype (fp32 or fp64; one check runs fp16 and bf16 against fp64), then checks the space
against its own formula for ΔW
(``lowdim.testing.references``: written from the papers for the first-party spaces, never through
``factors``; the product of a plugin space's single-sample ``factors`` otherwise, its ``delta`` checked against
that once) and the wrapped layer against that
formula: forward, gradients, per-sample overrides, disable/enable, merge/unmerge, files. Outputs and gradients are
compared with the formula in fp64, allowed rounding in units of the dtype's eps (``lowdim.testing.rounding``).

Every property applies to every first-party space. Textual Inversion ("ti") is an embedding space,
but its update is defined on any matrix (it writes n learned rows, the last ones), so it keeps the
whole contract on linear layers as is; ``test_on_an_embedding_...`` checks every space through an
``nn.Embedding`` too, and that a token space leaves every other row bit-identical, and ``test_on_a_1x1_...`` through
a 1x1 ``nn.Conv2d`` (both in ``lowdim.testing.contract_layer_kinds``). ``test_a_meta_built_model_...`` builds a model
on the meta device, injects it and assign-loads a saved state dict, the big-model route
(``lowdim.testing.contract_meta_load``): its frozen bases must come off meta and its output be the saved model's.
Disable/enable, merge/unmerge, merge_and_unload and the half-precision merge are in ``lowdim.testing.contract_merge``.
Every test of those modules is collected here, and ``import *`` brings them along.

``sample_config`` may draw every option, init options included: ``test_default_init_...`` puts the drawn config's
``init`` back to its class default (and a stack's components' ``init``, by leaving it out of their configs), since it
is the default init that must give ΔW = 0, while ``test_shapes_counts_and_reproducible_init`` checks every init drawn.

Run it over an installed plugin's space without a source checkout:
``python -m pytest --pyargs lowdim.testing.space_contract -k my-space``; or write
``from lowdim.testing.space_contract import *`` in a test module of your own (docs/plugins.md).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lowdim
from lowdim import functional as F
from lowdim.injection.space_checks import check_batched_factors, factor_shape_problem
from lowdim.testing.contract_cases import (
    INIT_WARNINGS,
    LAYERS,
    LIDB_FP32_ROUNDING,
    LOAD_WARNINGS,  # noqa: F401  tests/test_space_contract.py reads it here
    PROPERTY,
    REGISTRY,
    SPACES,
    Injected,
    build,
    cases,
    close,
    make_space,
    make_space_at_default_init,
    two_layer_model,
)
from lowdim.testing.fresh_process import fresh_process_problem

# Registered before their import, as lowdim.testing registers this module: a failed property there shows its values.
pytest.register_assert_rewrite("lowdim.testing.contract_layer_kinds", "lowdim.testing.contract_meta_load",
                               "lowdim.testing.contract_merge")
from lowdim.testing.contract_layer_kinds import (  # noqa: E402, F401  collected here, with the properties
    test_on_a_1x1_convolution_every_pixel_gets_the_spaces_update,
    test_on_an_embedding_a_lookup_is_a_row_of_the_spaces_update,
)
from lowdim.testing.contract_merge import (  # noqa: E402, F401  collected here, with the properties
    test_disable_gives_the_plain_model_and_enable_brings_the_adapter_back,
    test_in_half_precision_the_adapter_trains_merges_and_unmerges_within_rounding,
    test_merge_and_unload_leaves_a_plain_model_that_computes_the_spaces_output,
    test_merge_and_unmerge_are_idempotent_and_keep_the_spaces_output,
)
from lowdim.testing.contract_meta_load import (  # noqa: E402, F401  collected here, with the properties
    test_a_meta_built_model_assign_loaded_computes_what_the_saved_model_did,
)
from lowdim.testing.plugin_load_checks import (  # noqa: E402, F401  collected here, with the properties
    test_no_plugin_warned_while_loading,
    test_the_plugin_loads_and_registers_without_warnings,
)
from lowdim.testing.references import reference_delta  # noqa: E402
from lowdim.testing.rounding import UNITS, LayerTensors, exact64, units_off  # noqa: E402

pytestmark = pytest.mark.filterwarnings("error::lowdim.plugins.PluginWarning")


@pytest.fixture(autouse=True, scope="module")
def contract_registry():
    with lowdim.use_registry(REGISTRY):  # files name their space; loading resolves it here too
        yield REGISTRY


# -- the math ----------------------------------------------------------------------------------
@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases())
def test_factors_and_delta_give_the_spaces_own_update_within_its_rank(space_name, case):
    space, params, buffers = build(space_name, case)
    layer = case["layer"]
    down, up = space.factors(params, buffers)
    on = f"space '{space_name}' on a {layer.out_features}x{layer.in_features} layer"
    problem = factor_shape_problem(down, up, layer)  # first: a transposed factor has a "width" too, but not rank()'s
    assert problem is None, f"{on}: {problem}"
    width = down.shape[-2]
    assert width == space.rank(layer), (f"{on}: rank() says {space.rank(layer)} but factors are {width} wide "
                                        f"(down {tuple(down.shape)}); rank() must be the factors' width")
    expected = reference_delta(space, params, buffers)  # a plugin's is the factors' product: shapes checked first
    assert close(up @ down, expected, case["dtype"]), (
        f"{on}: up @ down of factors() is off the space's formula (REFERENCE_DELTA['{space_name}']) by up to "
        f"{float((up @ down - expected).abs().max()):.3g}")
    assert F.numerical_rank(expected) <= space.rank(layer), (
        f"{on}: ΔW has rank {F.numerical_rank(expected)}, more than rank() = {space.rank(layer)}")


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases())
def test_delta_is_the_product_of_the_factors(space_name, case):
    """Only ``Adapters.delta`` calls ``delta``; everything else (forward, merge, export) runs on ``factors``."""
    space, params, buffers = build(space_name, case)
    layer = case["layer"]
    factors = space.factors(params, buffers)
    problem = factor_shape_problem(*factors, layer)  # their product would be torch's bare "cannot be multiplied"
    assert problem is None, f"space '{space_name}' on a {layer.out_features}x{layer.in_features} layer: {problem}"
    product, delta = F.lowrank_delta(*factors), space.delta(params, buffers)
    gap = float((delta - product).abs().max()) if delta.shape == product.shape else float("inf")
    assert delta.shape == product.shape and close(delta, product, case["dtype"]), (
        f"space '{space_name}': delta() disagrees with up @ down of factors() by up to {gap:.3g} on a "
        f"{layer.out_features}x{layer.in_features} layer (delta {tuple(delta.shape)}, {case['dtype']}); an override "
        f"of delta must equal the factors' product, which is what lowdim runs, merges and exports")


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), layers=st.integers(1, 4))
def test_a_space_that_stacks_layers_gives_each_stacked_layer_its_own_factors(space_name, case, layers):
    space = make_space(space_name, case)
    if not space.stacks_layers():  # a claim, not a duty: such a space's layers make their factors one by one
        assert space_name not in ("lora", "lidb", "stack")
        return
    layer, dtype, generator = case["layer"], case["dtype"], torch.Generator().manual_seed(case["seed"])
    built = [({k: torch.randn(v.shape, generator=generator, dtype=dtype)
               for k, v in space.init_params(layer, generator).items()},
              {k: v.to(dtype) for k, v in space.make_buffers(layer, case["seed"] + i).items()}) for i in range(layers)]
    stacked = [{name: torch.stack([b[part][name] for b in built]) for name in built[0][part]} for part in (0, 1)]
    for compute in (space.factors, space.trainable_factors):
        down, up = compute(*stacked)
        for index, (params, buffers) in enumerate(built):
            own_down, own_up = compute(params, buffers)
            assert close(down[index], own_down, case["dtype"]) and close(up[index], own_up, case["dtype"])


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases())
def test_shapes_counts_and_reproducible_init(space_name, case):
    space, _, _ = build(space_name, case)
    layer = case["layer"]
    first = space.init_params(layer, torch.Generator().manual_seed(case["seed"]))
    again = space.init_params(layer, torch.Generator().manual_seed(case["seed"]))
    made = {k: tuple(v.shape) for k, v in first.items()}
    assert made == space.param_shapes(layer), f"init_params gave {made}; param_shapes says {space.param_shapes(layer)}"
    differ = sorted(k for k in first if not torch.equal(first[k], again[k]))
    assert not differ, (f"init_params gave different tensors for the same generator seed ({', '.join(differ)}): draw "
                        f"random values from its `generator` argument (torch.randn(..., generator=generator)), not "
                        f"from torch's global RNG, or an adapter's start cannot be reproduced")
    wrong = {k: str(v.dtype) for k, v in first.items() if v.dtype not in (torch.float32, torch.get_default_dtype())}
    assert not wrong, (f"space '{space_name}' on layer {layer.name}: init_params gave "
                       f"{', '.join(f'{k} as {t}' for k, t in wrong.items())}; params must be float32, and lowdim "
                       f"casts them with the model (lowdim.inject refuses the space too)")
    trainable = space.trainable_names(layer)
    assert set(trainable) <= set(first), f"trainable_names lists {sorted(set(trainable) - set(first))}, not params"
    counted = sum(first[k].numel() for k in trainable)
    assert space.num_params(layer) == counted, f"num_params says {space.num_params(layer)}, its params hold {counted}"
    seed = F.layer_seed(case["seed"], layer.name)
    one, two = space.make_buffers(layer, seed), space.make_buffers(layer, seed)
    assert all(torch.equal(one[k], two[k]) for k in one), (
        "make_buffers gave different tensors for the same seed: draw frozen state from "
        "torch.Generator().manual_seed(seed) alone, or a saved adapter cannot be loaded back")


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases())
def test_factors_keep_a_leading_batch_dimension(space_name, case):
    """Per-sample adapters (override, a hypernetwork) pass params of shape (K, *shape): one line if factors drops K."""
    space, params, buffers = build(space_name, case)
    check_batched_factors(space, case["layer"], params, buffers)


@pytest.mark.parametrize("space_name", SPACES)
def test_make_buffers_gives_the_same_tensors_in_a_fresh_process(space_name):
    """A file keeps only the seed: a basis drawn with ``hash(layer.name)`` (salted per process) or ``id(...)``
    passes every check in one process, and then fails to load back on the very machine that saved it."""
    problem = fresh_process_problem(space_name)
    if problem:
        pytest.fail(problem, pytrace=False)  # the line says it all: no traceback into the helper


@pytest.mark.parametrize("space_name", SPACES)
def test_a_fresh_adapter_gives_a_zero_update(space_name):
    """Checked once, apart from the properties: the registry warns about it only the first time a space is built."""
    assert space_name not in INIT_WARNINGS, INIT_WARNINGS.get(space_name)


# -- through the wrapped layer -----------------------------------------------------------------
@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases())
def test_default_init_leaves_model_output_unchanged(space_name, case):
    model = two_layer_model(case["layer"]).to(case["dtype"])
    x = torch.randn(4, case["layer"].in_features, dtype=case["dtype"])
    before = model(x)
    lowdim.inject(model, make_space_at_default_init(space_name, case), LAYERS, seed=case["seed"])
    assert torch.equal(model(x), before), (f"space '{space_name}': adding it with its default init changed the "
                                           f"model's output; init_params must give ΔW = 0 (docs/plugins.md)")


@pytest.mark.parametrize("space_name", SPACES)
@settings(PROPERTY, max_examples=PROPERTY.max_examples - 1)  # the example below is the one more
@given(case=cases(), scale=st.sampled_from([1.0, 0.5, -2.0]))
@example(case=LIDB_FP32_ROUNDING, scale=1.0)
def test_forward_is_the_spaces_math_and_only_trainable_params_get_gradients(space_name, case, scale):
    run = Injected(space_name, case, scale, freeze=True)  # as users do: the base model frozen first
    output = run.model(run.x)
    output.square().sum().backward()
    exact = run.exact(lambda y: y.square().sum())
    assert units_off(output, exact.value, exact.value_spread, run.dtype) <= UNITS, "the output is off the space's math"
    with torch.no_grad():  # what reads .weight instead of calling the layer (nn.TransformerEncoder's fused path) gets
        read = run.through_weights(run.x)
    assert units_off(read, exact.value, exact.value_spread, run.dtype) <= UNITS, (
        f"at scale {scale}, the model computed from its layers' .weight is off W + scale·ΔW")
    for layer, slot in run.adapters.slots("default").items():
        trainable = set(slot.space.trainable_names(slot.layer))
        for name, param in slot.params.items():
            assert param.requires_grad == (name in trainable)
            if name in trainable:
                assert param.grad is not None
                off = units_off(param.grad, exact.grads[layer][name], exact.grad_spreads[layer][name], run.dtype)
                assert off <= UNITS, f"layer {layer}: the gradient of {name} is off the space's math"
            else:
                assert param.grad is None
    assert all(p.grad is None for n, p in run.model.named_parameters() if "base_layer" in n)


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), scale=st.sampled_from([1.0, 0.5, -2.0]), batch=st.integers(1, 3), tiles=st.integers(1, 2),
       batched=st.booleans())
def test_override_runs_the_wrapped_layers_on_given_tensors_per_sample(space_name, case, scale, batch, tiles,
                                                                      batched):
    run = Injected(space_name, case, scale)
    before = run.model(run.x)
    lead = (batch,) if batched else ()
    given_tensors = {layer: {name: torch.randn(*lead, *shape, dtype=run.dtype, requires_grad=True)
                             for name, shape in slot.space.param_shapes(slot.layer).items()}
                     for layer, slot in run.adapters.slots("default").items()}
    x = torch.randn(tiles * batch, 3, case["layer"].in_features, dtype=run.dtype)

    def sample(tensors: LayerTensors, j: int) -> LayerTensors:  # sample j uses adapter j % batch, as CFG tiles
        return {layer: {k: v[j % batch] if batched else v for k, v in p.items()} for layer, p in tensors.items()}

    def expected(tensors: LayerTensors, squares: LayerTensors | None) -> torch.Tensor:
        return torch.stack([run.reference64(x[j], sample(tensors, j), None if squares is None else sample(squares, j))
                            for j in range(len(x))])

    with run.adapters.override("default", given_tensors):
        output = run.model(x)
    exact = exact64(expected, given_tensors, torch.sum)
    assert units_off(output, exact.value, exact.value_spread, run.dtype) <= UNITS, "the output is off the space's math"
    named = [(layer, name, tensor) for layer, p in given_tensors.items() for name, tensor in p.items()]
    got = torch.autograd.grad(output.sum(), [tensor for _, _, tensor in named])  # they reach what made the tensors
    for (layer, name, _), grad in zip(named, got, strict=True):
        off = units_off(grad, exact.grads[layer][name], exact.grad_spreads[layer][name], run.dtype)
        assert off <= UNITS, f"layer {layer}: the gradient of the given {name} is off the space's math"
    assert torch.equal(run.model(run.x), before)  # leaving the override restores the stored params


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), dtype=st.sampled_from(["fp32", "fp16", "bf16"]),
       scales=st.sampled_from([(1.0, 1.0), (0.5, 0.5), (1.0, -2.0)]), store_bases=st.booleans())
def test_save_load_round_trip(space_name, case, dtype, scales, store_bases, tmp_path_factory):
    run = Injected(space_name, {**case, "dtype": torch.float32}, scales[0])
    run.adapters.set_scale("default", scales[1], layers="2")  # a layer's own scale is part of the adapter
    path = tmp_path_factory.mktemp("rt") / "adapter.safetensors"
    lowdim.save_adapter(path, run.model, dtype=dtype, store_bases=store_bases)
    fresh = two_layer_model(case["layer"])
    lowdim.load_adapter(path, fresh, name="default")
    loaded = lowdim.Adapters(fresh)
    assert [slot.scale for slot in loaded.slots("default").values()] == list(scales)
    cast = lowdim.files.DTYPES[dtype]
    for layer, tensors in run.adapters.tensors("default").items():
        for key, value in tensors.items():
            # fp32 is bit-exact; fp16/bf16 equal the original rounded once to that dtype (|err| <= 2^-11 or 2^-8 rel.)
            assert torch.equal(loaded.tensors("default")[layer][key], value.detach().to(cast).float())
    for layer, bases in run.adapters.buffers("default").items():  # made again from the seed, or stored in fp32
        for key, value in bases.items():  # whatever the params' dtype: fp16 bases would compute another ΔW
            back = loaded.buffers("default")[layer][key]
            assert torch.equal(back, value.float().to(back.dtype) if store_bases else value), (
                f"{dtype} file, store_bases={store_bases}: basis {key} of layer {layer} came back off the saved one "
                f"by {float((back.double() - value.double()).abs().max()):.3g}")
    if dtype == "fp32":
        assert torch.equal(fresh(run.x), run.model(run.x))
    exported, live = lowdim.read_adapter(path).lora_factors(), loaded.lora_factors("default")
    for layer, (down, up) in live.items():  # what `lowdim export` writes is what the loaded model computes
        assert close(exported[layer][1].double() @ exported[layer][0].double(), up.double() @ down.double(),
                     torch.float32), f"{dtype} file: the exported update of layer {layer} is off the loaded model's"



# What ``from lowdim.testing.space_contract import *`` brings into a plugin's test module: the tests,
# the fixture that puts them in the registry they were parametrised from, and the warning filter.
__all__ = ["REGISTRY", "SPACES", "contract_registry", "pytestmark",
           *sorted(name for name in dir() if name.startswith("test_"))]
