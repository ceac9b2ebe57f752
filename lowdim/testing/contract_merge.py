"""The space contract's merge properties (``lowdim.testing.space_contract`` collects them with the rest): disable and
enable, merge and unmerge (idempotent, a copy of the update, taken out exactly), merge_and_unload, and the same in
fp16 and bf16. Their forwards on a merged model run under ``torch.no_grad()``, as an evaluation does: with grad on in
training mode, lowdim warns that a merged adapter gets no gradient, which a correct space's run must not show."""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from lowdim.errors import LowdimError
from lowdim.testing.contract_cases import PROPERTY, SPACES, STACK_HALF_ROUNDING, Injected, cases
from lowdim.testing.rounding import HALF_UNITS, UNITS, units_off


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases())
def test_disable_gives_the_plain_model_and_enable_brings_the_adapter_back(space_name, case):
    run = Injected(space_name, case)
    adapted = run.model(run.x)
    run.adapters.disable("default")
    assert torch.equal(run.model(run.x), run.plain(run.x))
    run.adapters.enable("default")
    assert torch.equal(run.model(run.x), adapted)
    with run.adapters.disabled("default"):
        assert torch.equal(run.model(run.x), run.plain(run.x))
    assert torch.equal(run.model(run.x), adapted)
    run.adapters.disable("default")
    with pytest.raises(KeyError), run.adapters.disabled("default"):
        raise KeyError  # an error inside leaves each switch as it found it: off here
    assert torch.equal(run.model(run.x), run.plain(run.x))
    run.adapters.enable("default")
    run.adapters.merge("default")
    with pytest.raises(LowdimError, match="merged"):  # the weights would keep it applied
        run.adapters.disable("default")
    with pytest.raises(LowdimError, match="merged"), run.adapters.disabled("default"):
        pass


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), scale=st.sampled_from([1.0, 0.5, -2.0]))
def test_merge_and_unmerge_are_idempotent_and_keep_the_spaces_output(space_name, case, scale):
    """And merge adds a copy of the update: params moved while merged change nothing until unmerge, which takes out
    exactly what merge added (not the moved params' update)."""
    run = Injected(space_name, case, scale)
    exact = run.exact()
    with torch.no_grad():  # merged, the model is evaluated: with grad on lowdim warns "unmerge it before training"
        for part in ("frozen", "all"):  # a stack folds its frozen components first, as personalize does
            run.adapters.merge("default", part=part)
            merged = {k: v.clone() for k, v in run.model.state_dict().items()}
            run.adapters.merge("default", part=part)
            assert all(torch.equal(v, merged[k]) for k, v in run.model.state_dict().items())
            assert run.units_off(exact) <= UNITS, f"merged ({part}), the output is off the space's math"
        merged, output = run.base_state(), run.model(run.x)
        run.move_params()  # as an optimizer step taken while merged: what merge added must be its own copy
        unchanged = all(torch.equal(v, merged[k]) for k, v in run.base_state().items())
        assert unchanged and torch.equal(run.model(run.x), output), (
            "merged, moving the adapter's params changed the model")
    exact = run.exact()  # the moved params, which unmerged the bypass path computes
    for _ in range(2):
        run.adapters.unmerge("default")
        assert run.base_weights_are_restored(), "unmerge took out other than what merge added"
        assert run.units_off(exact) <= UNITS, "unmerged, back on the bypass path, the output is off the space's math"
    run.adapters.remove_all()
    assert run.base_weights_are_restored() and list(run.model.state_dict()) == list(run.base)


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), scale=st.sampled_from([1.0, -0.5]))
def test_merge_and_unload_leaves_a_plain_model_that_computes_the_spaces_output(space_name, case, scale):
    run = Injected(space_name, case, scale)
    exact = run.exact()
    run.adapters.merge_and_unload()
    assert [type(m) for m in run.model] == [nn.Linear, nn.Tanh, nn.Linear] and run.adapters.names() == []
    assert list(run.model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert run.units_off(exact) <= UNITS, "merged and unloaded, the model's output is off the space's math"


@pytest.mark.parametrize("space_name", SPACES)
@settings(PROPERTY, max_examples=PROPERTY.max_examples - 1)  # the example below is the one more
@given(case=cases(), half=st.sampled_from([torch.bfloat16, torch.float16]))
@example(case=STACK_HALF_ROUNDING, half=torch.float16)
def test_in_half_precision_the_adapter_trains_merges_and_unmerges_within_rounding(space_name, case, half):
    """fp16 and bf16 are how models run on GPUs: the space must work in them, not only be close in fp32.
    Bounds are in units of the dtype's eps (``lowdim.testing.rounding``): rounding, not a wrong formula."""
    run = Injected(space_name, {**case, "dtype": half})
    exact = run.exact()
    eps = torch.finfo(half).eps
    output = run.model(run.x)
    assert output.dtype == half
    assert units_off(output, exact.value, exact.value_spread, half) <= HALF_UNITS, "the output is off the space's math"
    output.float().mean().backward()  # a mean: random params give outputs whose squares would overflow fp16
    for slot in run.adapters.slots("default").values():
        for name in slot.space.trainable_names(slot.layer):
            grad = slot.params[name].grad
            assert grad is not None and grad.dtype == half and bool(torch.isfinite(grad).all())
    run.adapters.merge("default")
    merged = {k: v.detach().double() for k, v in run.model.state_dict().items() if "slots" not in k}
    with torch.no_grad():  # evaluated, as a merged model is: with grad on lowdim warns "unmerge it before training"
        assert run.units_off(exact) <= HALF_UNITS, "merged, the output is off the space's math"
    run.adapters.unmerge("default")
    state = {k.replace("base_layer.", ""): v for k, v in run.model.state_dict().items() if "slots" not in k}
    for key, base in run.base.items():  # W + ΔW − ΔW rounds twice: within an ulp or two of the merged weight
        size = max(1.0, float(merged[next(k for k in merged if k.replace("base_layer.", "") == key)].abs().max()))
        assert float((state[key].double() - base.double()).abs().max()) <= 2 * eps * size
