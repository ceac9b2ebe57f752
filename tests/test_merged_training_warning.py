"""Training through a merged adapter: its params get no gradient, which torch reports only as a bare "element 0 of
tensors does not require grad". lowdim says it in its own words, once per adapter, at the first forward that could
be training (grad enabled, layer in training mode), and stays quiet everywhere else."""

import warnings

import pytest
import torch
from torch import nn

import lowdim

MERGED = "adapter 'default' is merged into the model's weights"


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    model.requires_grad_(False)
    return model


def _merged(model: nn.Module) -> lowdim.Adapters:
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2, init="gaussian"), ["0", "2"], seed=0)
    adapters.merge()
    return adapters


def _lowdim_warnings(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if "is merged into the model's weights" in str(w.message)]


def _forwards(model: nn.Module, count: int = 2) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(count):
            model(torch.randn(5, 8))
    return _lowdim_warnings(caught)


def test_two_training_forwards_warn_once_naming_the_adapter_and_the_fix():
    model = _model()
    _merged(model)
    said = _forwards(model)
    assert len(said) == 1
    assert said[0].category is UserWarning
    message = str(said[0].message)
    assert message.startswith(MERGED) and "no gradient" in message and "unmerge" in message
    assert said[0].filename == __file__  # the caller's line, not lowdim's or torch's


@pytest.mark.parametrize("quiet", [torch.no_grad, torch.inference_mode])
def test_no_warning_without_grad(quiet):
    model = _model()
    _merged(model)
    with quiet():
        assert _forwards(model) == []


def test_no_warning_in_eval_mode():
    model = _model()
    _merged(model)
    model.eval()
    assert _forwards(model) == []


def test_no_warning_after_unmerge_and_the_step_trains():
    model = _model()
    adapters = _merged(model)
    adapters.unmerge()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(torch.randn(5, 8)).pow(2).mean().backward()
    assert _lowdim_warnings(caught) == []
    assert all(p.grad is not None for p in adapters.parameters())
    adapters.disable()  # skipped again, but as disabled: no longer merged
    assert _forwards(model) == []


def test_no_warning_for_a_disabled_adapter():
    model = _model()
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0", "2"], seed=0)
    adapters.disable()
    assert _forwards(model) == []


def test_merging_again_after_unmerge_warns_again():
    model = _model()
    adapters = _merged(model)
    assert len(_forwards(model)) == 1
    adapters.unmerge()
    adapters.merge()
    assert len(_forwards(model)) == 1


def test_each_merged_adapter_warns_once():
    model = _model()
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"], seed=0)
    adapters.add("other", lowdim.get_space("lora", rank=2), ["0", "2"], seed=1)
    adapters.merge("default")
    adapters.merge("other")
    said = sorted(str(w.message).split(" is merged")[0] for w in _forwards(model, count=3))
    assert said == ["adapter 'default'", "adapter 'other'"]


def test_an_embedding_and_a_1x1_conv_warn_too():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 3)
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.conv(self.emb(ids).permute(0, 2, 1)[..., None])

    for layer in ("emb", "conv"):
        net = Net().requires_grad_(False)
        targets = lowdim.LayerSet(layer, (layer,), types=("embedding",)) if layer == "emb" else [layer]
        lowdim.inject(net, lowdim.get_space("lora", rank=2), targets, seed=0).merge()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            net(torch.tensor([[1, 2, 3]]))
        assert len(_lowdim_warnings(caught)) == 1, layer


def test_the_peft_style_loop_that_forgets_unmerge_is_told_why_before_torch_fails():
    """The review's loop: train, merge to evaluate, go on training without unmerge()."""
    model = _model()
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2, init="gaussian"), ["0", "2"], seed=0)
    optimizer = torch.optim.AdamW(adapters.parameters(), lr=1e-3)
    x = torch.randn(5, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(x).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        adapters.merge()
        model.eval()
        with torch.no_grad():
            model(x)
        model.train()
        with pytest.raises(RuntimeError, match="does not require grad"):
            model(x).pow(2).mean().backward()
    said = _lowdim_warnings(caught)
    assert len(said) == 1 and str(said[0].message).startswith(MERGED)


def test_no_warning_while_compiling():
    model = _model()
    _merged(model)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled(torch.randn(5, 8))
    assert _lowdim_warnings(caught) == []


def _train(model: nn.Module, params: list[torch.nn.Parameter], steps: int = 2) -> list[warnings.WarningMessage]:
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(steps):
            model(torch.randn(5, 8)).pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    return _lowdim_warnings(caught)


def _style_merged_then_me(me_layers: list[str]) -> tuple[nn.Sequential, lowdim.Adapters]:
    """HyperDreamBooth §4.3 by hand: merge one adapter on purpose (the predicted weights), then add a new one."""
    model = _model()
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2, init="gaussian"), ["0", "2"], name="style",
                             seed=0)
    adapters.merge("style")
    adapters.add("me", lowdim.get_space("lora", rank=2), me_layers, seed=1)
    return model, adapters


def test_training_a_new_adapter_beside_a_merged_one_does_not_warn_and_trains():
    model, adapters = _style_merged_then_me(["0", "2"])
    before = [p.detach().clone() for p in adapters.parameters("me")]
    assert _train(model, adapters.parameters("me")) == []
    assert any(not torch.equal(a, b) for a, b in zip(before, adapters.parameters("me"), strict=True))


def test_merging_the_one_being_trained_too_warns_for_both():
    model, adapters = _style_merged_then_me(["0", "2"])
    assert _forwards(model) == []
    adapters.merge("me")
    said = sorted(str(w.message).split(" is merged")[0] for w in _forwards(model))
    assert said == ["adapter 'me'", "adapter 'style'"]


@pytest.mark.parametrize("me_layers", [["0"], ["2"]], ids=["trained-before", "trained-after"])
def test_a_layer_where_the_merged_adapter_is_alone_is_quiet_while_another_adapter_trains(me_layers):
    """A style merged on every layer and a new adapter trained on some (cross-attention only, say): the layers
    holding only the style are no sign of training it, whichever runs first in the forward."""
    model, adapters = _style_merged_then_me(me_layers)
    assert _train(model, adapters.parameters("me")) == []


def test_a_merged_adapter_alone_on_the_model_warns_after_the_other_is_deleted():
    model, adapters = _style_merged_then_me(["0"])
    adapters.delete("me")
    said = _forwards(model)
    assert len(said) == 1 and str(said[0].message).startswith("adapter 'style'")


@pytest.mark.parametrize("idle", ["disabled", "frozen"])
def test_another_adapter_that_trains_nothing_does_not_silence_it(idle):
    model, adapters = _style_merged_then_me(["0", "2"])
    if idle == "disabled":
        adapters.disable("me")
    else:
        for param in adapters.parameters("me"):
            param.requires_grad_(False)
    said = _forwards(model)
    assert len(said) == 1 and str(said[0].message).startswith("adapter 'style'")


def test_a_copy_of_a_merge_then_train_model_is_judged_by_its_own_adapters():
    import copy

    model, adapters = _style_merged_then_me(["0"])
    twin, bare = copy.deepcopy(model), copy.deepcopy(model)
    assert _train(twin, lowdim.Adapters(twin).parameters("me")) == []  # its own 'me' trains over its own style
    lowdim.Adapters(bare).delete("me")  # this copy has only the merged style: training it is a slip
    said = _forwards(bare)
    assert len(said) == 1 and str(said[0].message).startswith("adapter 'style'")
    assert _train(model, adapters.parameters("me")) == []  # whatever its copies do


def test_the_merge_keeps_no_model_alive():
    import gc
    import weakref

    # Everything older than this test frozen out of the collection: late in a suite's worker a full collection
    # walks every object earlier tests left, while what matters is only what this model and its adapters made.
    # A reference from an older object (a module-level cache) still keeps the model alive, as it should.
    gc.freeze()
    try:
        model, adapters = _style_merged_then_me(["0"])
        first = weakref.ref(model)
        del model, adapters
        gc.collect()
    finally:
        gc.unfreeze()
    assert first() is None


def test_a_model_put_in_eval_before_the_adapter_came_does_not_warn():
    """The everyday order: model.eval(), load or inject, merge, forward (grad on): an evaluation, not training."""
    model = _model().eval()
    _merged(model)
    assert _forwards(model) == []
