"""accelerate's sequential offload leaves an adapter's tensors empty on meta: a forward says so in one line rather
than running on whatever memory is there (it drew a picture off by 1e21, with no error)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lowdim

accelerate = pytest.importorskip("accelerate")


@pytest.mark.parametrize("space", ["lidb", "lora"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_a_forward_after_sequential_offload_is_refused_naming_accelerate(space, grad):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8)).requires_grad_(False)
    options = {"a": 4, "b": 4} if space == "lidb" else {}
    lowdim.inject(model, lowdim.get_space(space, rank=1, init="gaussian", **options), ["0", "2"], seed=0)
    accelerate.cpu_offload(model, execution_device=torch.device("cpu"))
    with torch.set_grad_enabled(grad), pytest.raises(lowdim.LowdimError, match="accelerate's offload hooks hold them"):
        model(torch.randn(2, 8))


def test_a_model_wholly_on_meta_still_traces_shapes():
    model = nn.Sequential(nn.Linear(8, 8)).requires_grad_(False)
    lowdim.inject(model, lowdim.get_space("lidb", a=4, b=4, rank=1, init="gaussian"), ["0"], seed=0)
    model.to("meta")
    with torch.no_grad():
        assert model(torch.randn(2, 8, device="meta")).shape == (2, 8)


@pytest.mark.filterwarnings("ignore:The following device_map keys do not match any submodules")
@pytest.mark.parametrize("space", ["lidb", "lora"])
def test_a_device_map_that_offloads_only_the_adapter_s_params_is_refused_naming_accelerate(space, tmp_path):
    """Its hook sits on the params alone (the slot's own tensors stay put): nothing brings them back for the forward,
    which ran on whatever memory was there."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8)).requires_grad_(False)
    options = {"a": 4, "b": 4} if space == "lidb" else {}
    lowdim.inject(model, lowdim.get_space(space, rank=1, init="gaussian", **options), ["0"], seed=0)
    slot = model[0].slots["default"]
    device_map = {"0.base_layer": "cpu", "0.slots.default.params": "disk",
                  **{f"0.slots.default.{name}": "cpu" for name in slot._buffers}}
    accelerate.dispatch_model(model, device_map=device_map, main_device="cpu", offload_dir=tmp_path)
    assert not hasattr(slot, "_hf_hook") and hasattr(slot.params, "_hf_hook")
    for grad in (False, True):
        with torch.set_grad_enabled(grad), pytest.raises(lowdim.LowdimError, match="accelerate's offload hooks"):
            model(torch.randn(2, 8))
