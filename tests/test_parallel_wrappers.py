"""Adapters behind nn.DataParallel or DistributedDataParallel: lowdim looks through the wrapper's ``.module``, as
accelerate's unwrap_model does, so the view, save and load see the adapters and files name the model's own layers
(no ``module.`` prefix). Adding an adapter through a DDP is refused: DDP syncs only the parameters it saw when it
was made, so the new ones would train apart on each process; adding through the ``.module`` of a DDP lowdim has seen
warns."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import lowdim
from lowdim.errors import LowdimError


def plain() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 4))
    net.requires_grad_(False)
    return net


def space() -> lowdim.Space:
    return lowdim.get_space("lora", rank=2, init="gaussian", init_std=0.3)


def check_seen_through(wrapper: nn.Module, inner: nn.Module, tmp_path) -> None:
    adapters = lowdim.Adapters(wrapper)
    assert adapters.names() == ["default"] and adapters.model is inner
    path = lowdim.save_adapter(tmp_path / "a.safetensors", wrapper)
    assert [layer.name for layer in lowdim.read_adapter(path).layers] == ["0", "2"]
    fresh = plain()
    lowdim.load_adapter(path, nn.DataParallel(fresh))
    x = torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), inner(x), rtol=0, atol=0)
        expected = inner(x)
        adapters.merge()
        torch.testing.assert_close(wrapper(x), expected, rtol=1e-5, atol=1e-6)


def test_data_parallel_is_looked_through_by_inject_view_save_and_load(tmp_path):
    inner = plain()
    wrapper = nn.DataParallel(inner)
    lowdim.inject(wrapper, space(), ["0", "2"], seed=1)  # the inner model's names, as a file records them
    check_seen_through(wrapper, inner, tmp_path)


def test_ddp_made_after_inject_is_looked_through(one_process_group, tmp_path):
    inner = plain()
    lowdim.inject(inner, space(), ["0", "2"], seed=1)
    check_seen_through(DistributedDataParallel(inner), inner, tmp_path)


def test_adding_through_a_ddp_is_refused_naming_the_order(one_process_group, tmp_path):
    inner = plain()
    inner[0].weight.requires_grad_(True)  # DDP wants something to train
    wrapper = DistributedDataParallel(inner)
    with pytest.raises(LowdimError, match=r"DistributedDataParallel.*before `DistributedDataParallel\(model\)` "
                                          r"is made") as caught:
        lowdim.inject(wrapper, space(), ["0"])
    assert "\n" not in str(caught.value)
    assert not any("slots" in name for name, _ in inner.named_parameters())


def test_loading_through_a_ddp_is_refused_saying_when_to_load_and_how_to_evaluate(one_process_group, tmp_path):
    """load_adapter adds as inject does: the line names the order for training and the way for evaluation (review
    BQ3), and does not invite adding through ``ddp.module`` after wrapping."""
    trained = plain()
    lowdim.inject(trained, space(), ["0", "2"], seed=1)
    path = lowdim.save_adapter(tmp_path / "a.safetensors", trained)
    inner = plain()
    inner[0].weight.requires_grad_(True)
    wrapper = DistributedDataParallel(inner)
    with pytest.raises(LowdimError) as caught:
        lowdim.load_adapter(path, wrapper)
    said = str(caught.value)
    assert "\n" not in said and "(model.module)" not in said
    assert "before `DistributedDataParallel(model)` is made" in said
    assert "through `ddp.module` afterwards has the same problem" in said
    assert "to evaluate" in said
    assert lowdim.Adapters(inner).names() == []


def test_adding_through_ddp_module_after_lowdim_saw_the_ddp_warns(one_process_group, tmp_path):
    inner = plain()
    inner[0].weight.requires_grad_(True)
    wrapper = DistributedDataParallel(inner)
    lowdim.Adapters(wrapper)  # lowdim sees the DDP (a save or a view of it), which is alive and wraps it still
    said = r"adapter 'late' was added to a model a DistributedDataParallel made before this add still wraps"
    with pytest.warns(UserWarning, match=said + r".*before `DistributedDataParallel\(model\)` is made") as caught:
        lowdim.Adapters(wrapper.module).add("late", space(), ["0"])
    assert caught[0].filename == __file__  # the user's line


def test_adding_to_a_model_before_wrapping_it_says_nothing(one_process_group, recwarn):
    inner = plain()
    lowdim.inject(inner, space(), ["0"])
    inner[0].weight.requires_grad_(True)
    DistributedDataParallel(inner)
    assert not [w for w in recwarn if "DistributedDataParallel" in str(w.message)]


def test_adding_to_the_model_and_wrapping_it_anew_after_a_refusal_says_nothing(one_process_group, recwarn):
    """What the refusal says to do (review BR3): add to the model, then wrap it again. The new DDP syncs the adapter,
    so no warning that it trains apart, even while the refused DDP is still held."""
    inner = plain()
    inner[0].weight.requires_grad_(True)
    first = DistributedDataParallel(inner)
    with pytest.raises(LowdimError, match="before `DistributedDataParallel"):
        lowdim.Adapters(first).add("default", space(), ["0"])
    lowdim.Adapters(inner).add("default", space(), ["0"])
    again = DistributedDataParallel(inner)
    assert any("slots.default" in name for name, _ in again.named_parameters())
    assert not [w for w in recwarn if "DistributedDataParallel" in str(w.message)]


def test_no_warning_once_the_ddp_lowdim_saw_is_gone(one_process_group, recwarn):
    """The DDP that wrapped the model is deleted: nothing wraps it now, so an add warns of nothing (review BR3)."""
    import gc

    inner = plain()
    inner[0].weight.requires_grad_(True)
    wrapper = DistributedDataParallel(inner)
    lowdim.Adapters(wrapper)
    del wrapper
    gc.collect()
    lowdim.Adapters(inner).add("late", space(), ["0"])
    assert not [w for w in recwarn if "DistributedDataParallel" in str(w.message)]
