"""Behaviours no test pinned, found by session 62's mutation audit (review FB): each test here passes on the code and
fails on the one-place change the comment above it names (the mutant it was written against)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import lowdim


# --- S6: a layer whose B_train the user froze must not decide what its same-shape neighbours train ---------
def test_a_layer_with_frozen_b_train_does_not_decide_what_its_stacked_neighbours_train():
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(6, 6) for _ in range(3)]).to(torch.float64).requires_grad_(False)
    adapters = lowdim.Adapters(model)
    adapters.add("a", lowdim.get_space("lidb", a=4, b=4, rank=1), ["0", "1", "2"], seed=0)
    model.to(torch.float64)
    with torch.no_grad():
        for param in adapters.parameters("a"):
            param.copy_(torch.randn_like(param))
    model[0].slots["a"].params["B_train"].requires_grad_(False)  # train only A there (the frozen-B recipe)
    x = torch.randn(2, 6, dtype=torch.float64)

    def grads(stacked: bool):
        params = [p for layer in model for p in layer.slots["a"].params.values()]
        for p in params:
            p.grad = None
        if stacked:
            with lowdim.stacked_factors(model):
                out = model(x)
        else:
            out = model(x)
        out.square().sum().backward()
        return out.detach(), [None if p.grad is None else p.grad.clone() for p in params]

    out_plain, plain = grads(False)
    out_stacked, stacked = grads(True)
    torch.testing.assert_close(out_stacked, out_plain)
    assert [g is None for g in stacked] == [g is None for g in plain]
    for a, b in zip(stacked, plain, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b)


# --- G4: a state dict cast to half (to store it smaller) loads as before: its int records are not trusted ----
def test_a_state_dict_cast_to_half_loads_its_adapter_values():
    def make(values):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 4))
        adapters = lowdim.inject(model, lowdim.get_space("lidb", a=3, b=3), ["0", "2"], seed=7)
        g = torch.Generator().manual_seed(values)
        with torch.no_grad():
            for p in adapters.parameters("default"):
                p.copy_(torch.randn(p.shape, generator=g))
        return model
    source, target = make(1), make(2)
    halved = {k: v.half() for k, v in source.state_dict().items()}
    target.load_state_dict(halved)
    expected = {k: v.float() for k, v in halved.items() if "slots" in k and "lowdim_" not in k}
    for k, v in expected.items():
        assert torch.equal(target.state_dict()[k], v), k


# --- G8: after loading a state dict into a model whose stack has its frozen part merged, unmerge subtracts
# what the loaded frozen params added --------------------------------------------------------------------------
def test_unmerge_after_loading_into_a_frozen_merged_stack_restores_the_base_weight():
    space = lowdim.get_space("stack")
    def make(values):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 6))
        adapters = lowdim.inject(model, space, ["0", "2"], seed=3)
        g = torch.Generator().manual_seed(values)
        with torch.no_grad():
            for layer in (model[0], model[2]):
                for p in layer.slots["default"].params.values():
                    p.copy_(torch.randn(p.shape, generator=g))
        adapters.merge(part="frozen")
        return model, adapters
    source, source_adapters = make(1)
    target, target_adapters = make(2)
    target.load_state_dict(source.state_dict(), strict=True)
    source_adapters.unmerge()
    target_adapters.unmerge()
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 6))
    for i in (0, 2):
        torch.testing.assert_close(target[i].base_layer.weight, source[i].base_layer.weight)
        torch.testing.assert_close(target[i].base_layer.weight, plain[i].weight)


# --- A5: a LiDB rank equal to what the layer holds (a and b clamped to it) is no wasted rank: no warning -------
def test_a_lidb_rank_equal_to_the_layer_size_is_clamped_without_a_wasted_rank_warning():
    import warnings as _w

    from lowdim.injection.adding import adjusted_notes

    model = nn.Sequential(nn.Linear(4, 4))
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        adapters = lowdim.Adapters(model)
        info = adapters.add("a", lowdim.get_space("lidb", rank=4), ["0"], seed=0)
    assert not [w for w in caught if "rank exceeds" in str(w.message)]
    assert adjusted_notes(info) == ["a=100, b=50 clamped to a=4, b=4 for 0"]


# --- P3: a copy of a model a DDP holds (an EMA copy: copy.deepcopy) is not held by that DDP: no warning ---------
def test_adding_to_a_deepcopy_of_a_ddp_held_model_does_not_warn_about_the_ddp(one_process_group, recwarn):
    import copy

    from torch.nn.parallel import DistributedDataParallel

    inner = nn.Sequential(nn.Linear(4, 4))
    inner[0].weight.requires_grad_(True)
    wrapper = DistributedDataParallel(inner)
    lowdim.Adapters(wrapper)  # lowdim sees the DDP
    ema = copy.deepcopy(inner)
    lowdim.Adapters(ema).add("ema", lowdim.get_space("lora"), ["0"], seed=0)
    assert not [w for w in recwarn if "DistributedDataParallel" in str(w.message)]
    del wrapper


# --- M2: a re: pattern matches whole names: 're:1|2' is layers 1 and 2, not 10 and 11 too --------------------
def test_a_regex_alternation_matches_whole_layer_names_only():
    model = nn.Sequential(*[nn.Linear(3, 3) for _ in range(12)])
    lowdim.inject(model, lowdim.get_space("lora"), "re:1|2", seed=0)
    adapted = [name for name, module in model.named_children() if hasattr(module, "slots")]
    assert adapted == ["1", "2"]


# --- M4: a grouped 1x1 convolution is not linear over all channels: never a target, said once ------------------
def test_a_grouped_1x1_convolution_is_no_target_and_is_named_in_the_warning():
    model = nn.Sequential(nn.Conv2d(4, 4, 1, groups=2), nn.Conv2d(4, 4, 1))
    with pytest.warns(UserWarning, match=r"also match 1 convolution \(e\.g\. 0 \(1x1 nn\.Conv2d with groups 2\)\)"):
        lowdim.inject(model, lowdim.get_space("lora"), "*", seed=0)
    assert not hasattr(model[0], "slots") and hasattr(model[1], "slots")


# --- M5: a bracket glob is a wildcard, not a literal name ---------------------------------------------------------
def test_a_bracket_glob_is_a_wildcard_selecting_the_layers_it_names():
    model = nn.Sequential(*[nn.Linear(3, 3) for _ in range(4)])
    lowdim.inject(model, lowdim.get_space("lora"), "[12]", seed=0)
    assert [name for name, module in model.named_children() if hasattr(module, "slots")] == ["1", "2"]


# --- M9: a comma inside a regex's braces belongs to the regex ----------------------------------------------------
def test_a_comma_inside_regex_braces_belongs_to_the_regex():
    model = nn.Sequential(*[nn.Linear(3, 3) for _ in range(12)])
    lowdim.inject(model, lowdim.get_space("lora"), "re:1[0-9]{0,1}", seed=0)
    assert [name for name, module in model.named_children() if hasattr(module, "slots")] == ["1", "10", "11"]


# --- M8: a wrapper's inner layer is the wrapped layer itself, never a target of its own ----------------------------
def test_a_second_adapter_added_with_star_adapts_the_wrappers_never_their_inner_base_layer():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    adapters = lowdim.Adapters(model)
    adapters.add("first", lowdim.get_space("lora"), ["0", "2"], seed=0)
    adapters.add("second", lowdim.get_space("lora"), "*", seed=1)
    adapted = {name: sorted(module.slots) for name, module in model.named_modules() if hasattr(module, "slots")}
    assert adapted == {"0": ["first", "second"], "2": ["first", "second"]}
    assert isinstance(model[0].base_layer, nn.Linear) and isinstance(model[2].base_layer, nn.Linear)
