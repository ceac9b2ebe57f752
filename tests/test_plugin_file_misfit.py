"""A file whose tensors do not fit what a plugin's space now computes for the file's own config and layers is not
only a damaged file: the space may shape its params from something its config does not record (a module
global, an environment variable), or another version of the plugin wrote it. A load and `lowdim show` say both;
lowdim's own spaces keep the damaged-file line, since their shapes are their config's alone."""

from __future__ import annotations

import pytest
import torch
from safetensors_edit import rewrite
from test_plugins import ScalarConfig, plugin_module
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError
from lowdim.spaces import Space

OTHER_CAUSE = ("(or the space's shapes depend on something its config does not record, or another version of its "
               "plugin wrote the file)")


class HiddenWidth(Space):
    """A LoRA whose rank is a class attribute, not an option: no file records it."""

    name = "hidden-width"
    config_class = ScalarConfig
    width = 2

    def param_shapes(self, layer):
        return {"down": (self.width, layer.in_features), "up": (layer.out_features, self.width)}

    def init_params(self, layer, generator):
        return {"down": torch.randn(self.width, layer.in_features, generator=generator),
                "up": torch.zeros(layer.out_features, self.width)}

    def factors(self, params, buffers):
        return params["down"], params["up"]


@pytest.fixture
def hidden_width(tmp_path):
    """A file the plugin's space saved with width 2, read with width 3 (or 1), as another environment would."""
    registry = lowdim.Registry.from_plugins(
        ["lowdim.spaces.builtin", plugin_module("hidden", register_spaces=lambda register: register(HiddenWidth))])
    with lowdim.use_registry(registry):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
        lowdim.inject(model, lowdim.get_space("hidden-width"), ["0", "2"])
        yield lowdim.save_adapter(tmp_path / "hidden.safetensors", model)
    HiddenWidth.width = 2


@pytest.mark.parametrize(("width", "said"), [(3, "tensor 'up' is too short for layer 0"),
                                             (1, "tensor(s) down, up hold more values than the layers need")])
def test_a_load_names_the_other_cause_beside_damage(hidden_width, width, said):
    HiddenWidth.width = width
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(hidden_width)
    assert str(refused.value) == f"{hidden_width}: {said} {OTHER_CAUSE}"


def test_show_says_it_in_the_loads_words(hidden_width):
    from lowdim_sd.file_info import describe

    HiddenWidth.width = 3
    assert dict(describe(hidden_width).rows)["problem"] == (
        f"tensor 'up' is too short for layer 0 {OTHER_CAUSE}: every command that loads this file refuses it")


def test_a_tensor_cut_short_in_a_file_of_a_plugins_space_names_the_other_cause_too(hidden_width):
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(rewrite(hidden_width, {"down": torch.zeros(0)}))
    assert str(refused.value).endswith(f"tensor 'down' is too short for layer 0 {OTHER_CAUSE}")


def test_a_first_party_plugins_space_names_its_package(tmp_path):
    pytest.importorskip("lowdim_vera")
    model = nn.Sequential(nn.Linear(6, 5))
    lowdim.inject(model, lowdim.get_space("vera"), ["0"])
    path = lowdim.save_adapter(tmp_path / "v.safetensors", model)
    key = next(iter(lowdim.read_adapter(path).params["0"]))
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(rewrite(path, {key: torch.zeros(1)}))
    assert "or another version of its plugin (package lowdim-vera) wrote the file)" in str(refused.value)


def test_lowdims_own_spaces_keep_the_damaged_file_line(tmp_path):
    model = nn.Sequential(nn.Linear(6, 5))
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"])
    path = lowdim.save_adapter(tmp_path / "l.safetensors", model)
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(rewrite(path, {"up": torch.zeros(3)}))
    assert str(refused.value) == f"{path}: tensor 'up' is too short for layer 0"
