"""Adapter files an older lowdim saved through nn.DataParallel or DDP (review BQ2): before lowdim looked through
the wrapper, it named each layer as the wrapper shows it (``module.0``) and seeded each frozen basis from that name.
Such a file loads again onto the same model, wrapped or not, with the bases it was trained with; a file whose names
fit neither way says that its names carry the wrapper's ``module.``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError


def plain() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 4))
    net.requires_grad_(False)
    return net


class Holder(nn.Module):
    """Names its model's layers ``module.0``, ``module.2`` exactly as nn.DataParallel's named_modules did when the
    previous lowdim saved through one: what that lowdim wrote, written here by today's."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


SPACES = {"lora": lambda: lowdim.get_space("lora", rank=2), "lidb": lambda: lowdim.get_space("lidb", a=4, b=3)}


def old_layout_file(tmp_path, space: str, **save) -> tuple:
    """(path, the model it was trained on, its output on ``x``, x): an adapter saved through a wrapper, old layout."""
    trained = Holder(plain())
    adapters = lowdim.Adapters(trained)
    adapters.add("default", SPACES[space](), "*", seed=3)
    with torch.no_grad():
        for slot in adapters.slots("default").values():
            for param in slot.parameters():
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(param.numel()))
    path = lowdim.save_adapter(tmp_path / "old.safetensors", adapters, **save)
    assert [layer.name for layer in lowdim.read_adapter(path).layers] == ["module.0", "module.2"]
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return path, trained, trained(x), x


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("wrap", [nn.DataParallel, lambda model: model], ids=["data_parallel", "plain"])
def test_a_file_saved_through_a_wrapper_loads_onto_the_same_model(tmp_path, space, wrap):
    path, _, expected, x = old_layout_file(tmp_path, space)
    fresh = plain()
    info = lowdim.load_adapter(path, wrap(fresh))
    assert [layer.name for layer in info.layers] == ["0", "2"]
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), expected, rtol=0, atol=0)  # the same bases, the same params


@pytest.mark.parametrize("space", sorted(SPACES))
def test_a_file_read_first_then_loaded_is_stripped_too(tmp_path, space):
    path, _, expected, x = old_layout_file(tmp_path, space, store_bases=True)
    fresh = plain()
    lowdim.load_adapter(lowdim.read_adapter(path), fresh)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), expected, rtol=0, atol=0)


def test_saved_again_it_loads_in_todays_layout(tmp_path):
    path, _, expected, x = old_layout_file(tmp_path, "lidb")
    first = plain()
    lowdim.load_adapter(path, nn.DataParallel(first))
    again = lowdim.save_adapter(tmp_path / "again.safetensors", first)
    assert [layer.name for layer in lowdim.read_adapter(again).layers] == ["0", "2"]
    second = plain()
    lowdim.load_adapter(again, second)
    with torch.no_grad():
        torch.testing.assert_close(second(x), expected, rtol=0, atol=0)


def test_a_model_that_has_those_names_keeps_them(tmp_path):
    path, _, expected, x = old_layout_file(tmp_path, "lidb")
    holder = Holder(plain())
    info = lowdim.load_adapter(path, holder)
    assert [layer.name for layer in info.layers] == ["module.0", "module.2"]
    with torch.no_grad():
        torch.testing.assert_close(holder(x), expected, rtol=0, atol=0)


def test_a_file_that_fits_neither_way_names_the_module_prefix(tmp_path):
    path, *_ = old_layout_file(tmp_path, "lora")
    other = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    with pytest.raises(AdapterFileError, match=r"its layer names start with 'module\.' \(saved through nn\."
                                               r"DataParallel, DDP or torch\.compile\).*do not fit this model "
                                               r"either") as caught:
        lowdim.load_adapter(path, nn.DataParallel(other))
    assert "\n" not in str(caught.value)


def test_its_bases_made_again_after_to_empty_are_the_ones_it_was_trained_with(tmp_path):
    path, *_ = old_layout_file(tmp_path, "lidb")
    fresh = plain()
    adapters = lowdim.Adapters(fresh)
    lowdim.load_adapter(path, adapters)
    before = {layer: {k: v.clone() for k, v in slot.buffers_dict().items()} for layer, slot in
              adapters.slots("default").items()}
    fresh.to("meta").to_empty(device="cpu")
    after = {layer: slot.buffers_dict() for layer, slot in adapters.slots("default").items()}
    for layer, buffers in before.items():
        for key, value in buffers.items():
            torch.testing.assert_close(after[layer][key], value, rtol=0, atol=0)


@pytest.mark.parametrize("read_first", [False, True], ids=["path", "read_adapter"])
def test_verify_bases_false_loads_one_whose_checksum_differs_as_for_any_file(tmp_path, read_first):
    """The opt-out for a platform whose bases differ in the last bit (docs/spaces.md) holds for these files too."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path, _, expected, x = old_layout_file(tmp_path, "lidb")
    with safe_open(str(path), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, no dict)
        metadata = {**handle.metadata(), "basis_checksum": "0" * 16}
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(AdapterFileError, match="differ"):
        lowdim.load_adapter(path, plain())
    fresh = plain()
    source = lowdim.read_adapter(path) if read_first else path
    lowdim.load_adapter(source, nn.DataParallel(fresh), verify_bases=False)
    with torch.no_grad():
        assert torch.allclose(fresh(x), expected, atol=1e-6)


class Compiled(nn.Module):
    """Names its model's layers ``_orig_mod.0`` as torch.compile's wrapper did when an older lowdim saved through
    one (it looked through DataParallel and DDP only)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._orig_mod = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._orig_mod(x)


@pytest.mark.parametrize("wrap, names", [(Compiled, ["_orig_mod.0", "_orig_mod.2"]),
                                         (lambda model: Compiled(Holder(model)), ["_orig_mod.module.0",
                                                                                  "_orig_mod.module.2"])],
                         ids=["compiled", "compiled_data_parallel"])
def test_a_file_saved_through_a_compiled_model_loads_onto_the_plain_one(tmp_path, wrap, names):
    trained = wrap(plain())
    adapters = lowdim.Adapters(trained)
    adapters.add("default", SPACES["lidb"](), "*", seed=3)
    with torch.no_grad():
        for slot in adapters.slots("default").values():
            for param in slot.parameters():
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(param.numel()))
    path = lowdim.save_adapter(tmp_path / "old.safetensors", adapters)
    assert [layer.name for layer in lowdim.read_adapter(path).layers] == names
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    fresh = plain()
    info = lowdim.load_adapter(path, fresh)
    assert [layer.name for layer in info.layers] == ["0", "2"]
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), trained(x), rtol=0, atol=0)  # the bases it was trained with
