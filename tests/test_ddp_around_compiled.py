"""A DistributedDataParallel around a compiled model, ``DDP(torch.compile(model))`` (review BT10), is looked through to
the model as ``torch.compile(DDP(model))`` is: adding through ``ddp.module`` of one lowdim saw warns that the
adapter would train apart; adding through the DDP is refused, and doing as the refusal says (add to the model, wrap
it anew) then says nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import lowdim
from lowdim.errors import LowdimError

APART = "DistributedDataParallel made before this add still wraps"


def plain() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 4)).eval().requires_grad_(False)
    model[0].weight.requires_grad_(True)  # DDP wants something to train
    return model


def space() -> lowdim.Space:
    return lowdim.get_space("lora", rank=2)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def ddp_around_compiled(inner: nn.Module) -> DistributedDataParallel:
    return DistributedDataParallel(torch.compile(inner, backend="eager"))


def test_a_ddp_around_a_compiled_model_is_looked_through_to_the_model(one_process_group):
    inner = plain()
    lowdim.inject(inner, space(), ["0"], seed=1)
    wrapper = ddp_around_compiled(inner)
    assert lowdim.Adapters(wrapper).model is inner and list(lowdim.Adapters(wrapper).slots()) == ["0"]


def test_adding_through_its_module_after_lowdim_saw_it_warns(one_process_group):
    inner = plain()
    wrapper = ddp_around_compiled(inner)
    lowdim.Adapters(wrapper)  # lowdim sees the DDP, which is alive and wraps the model still
    with pytest.warns(UserWarning, match=rf"adapter 'late' was added to a model a {APART}"):
        lowdim.Adapters(wrapper.module).add("late", space(), ["0"])


def test_adding_through_it_is_refused_and_adding_to_the_model_then_wrapping_anew_says_nothing(one_process_group,
                                                                                              recwarn):
    inner = plain()
    first = ddp_around_compiled(inner)
    lowdim.Adapters(first)  # seen: the model keeps a reference to this DDP, which the refusal must drop
    with pytest.raises(LowdimError, match="before `DistributedDataParallel"):
        lowdim.Adapters(first).add("default", space(), ["0"])
    lowdim.Adapters(inner).add("default", space(), ["0"])
    again = ddp_around_compiled(inner)
    assert any("slots.default" in name for name, _ in again.named_parameters())
    assert not [w for w in recwarn if APART in str(w.message)], [str(w.message) for w in recwarn]
