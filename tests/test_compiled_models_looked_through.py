"""A torch.compile'd model (an OptimizedModule holding the model as ``_orig_mod``) is looked through as a
DataParallel is: the view, inject, save and load see the model's own layers, so names carry no ``_orig_mod.`` prefix
and files move between the compiled and the plain model. Compiling after adding adapters, the usual order, keeps
working; adding through a compiled DDP is refused as adding through the DDP is."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import lowdim
from lowdim.errors import LowdimError


def plain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 4)).eval().requires_grad_(False)


def space() -> lowdim.Space:
    return lowdim.get_space("lora", rank=2, init="gaussian", init_std=0.3)


def compiled(model: nn.Module) -> nn.Module:
    return torch.compile(model, backend="eager")  # dynamo is what is looked through; eager keeps the test fast


def saved_names(path) -> list[str]:
    return [layer.name for layer in lowdim.read_adapter(path).layers]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_inject_into_a_compiled_model_names_the_model_s_own_layers_and_saves_a_plain_file(tmp_path):
    inner = plain()
    model = compiled(inner)
    adapters = lowdim.inject(model, space(), ["0", "2"], seed=1)  # the plain model's names
    assert adapters.model is inner and list(adapters.slots()) == ["0", "2"]
    assert list(lowdim.inject(compiled(plain()), space(), "*", seed=1).slots()) == ["0", "2"]
    path = lowdim.save_adapter(tmp_path / "a.safetensors", model)
    assert saved_names(path) == ["0", "2"]
    fresh = plain()
    lowdim.load_adapter(path, fresh)
    x = torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), fresh(x), rtol=1e-5, atol=1e-6)


def test_a_plain_model_s_file_loads_into_the_compiled_model(tmp_path):
    source = plain()
    lowdim.inject(source, space(), ["0", "2"], seed=1)
    path = lowdim.save_adapter(tmp_path / "a.safetensors", source)
    model = compiled(plain())
    lowdim.load_adapter(path, model)
    assert list(lowdim.Adapters(model).slots()) == ["0", "2"]
    x = torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), rtol=1e-5, atol=1e-6)


def test_compiling_after_adding_adapters_keeps_the_view_the_names_and_merge(tmp_path):
    inner = plain()
    lowdim.inject(inner, space(), ["0", "2"], seed=1)
    model = compiled(inner)
    x = torch.randn(3, 6)
    with torch.no_grad():
        eager = inner(x)
        torch.testing.assert_close(model(x), eager, rtol=1e-5, atol=1e-6)
    adapters = lowdim.Adapters(model)
    assert adapters.names() == ["default"] and list(adapters.slots()) == ["0", "2"]
    assert saved_names(lowdim.save_adapter(tmp_path / "a.safetensors", model)) == ["0", "2"]
    adapters.merge()
    with torch.no_grad():
        torch.testing.assert_close(model(x), eager, rtol=1e-5, atol=1e-6)
    assert adapters.merge_and_unload() is inner


def test_an_adapter_added_through_a_compiled_model_that_already_ran_shows_in_its_next_call():
    inner = plain()
    model = compiled(inner)
    x = torch.randn(3, 6)
    with torch.no_grad():
        before = model(x)
        lowdim.inject(model, space(), ["0", "2"], seed=1)
        after = model(x)
        torch.testing.assert_close(after, inner(x), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(after, before)


def test_adding_through_a_compiled_ddp_is_refused_as_through_the_ddp(one_process_group):
    model = compiled(DistributedDataParallel(plain().requires_grad_(True)))
    with pytest.raises(LowdimError, match="DistributedDataParallel"):
        lowdim.inject(model, space(), ["0", "2"], seed=1)
