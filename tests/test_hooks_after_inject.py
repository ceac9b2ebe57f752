"""Forward hooks and ``inject``, as the README says: a hook registered on a layer before ``inject`` stays on what
is now ``layer.base_layer`` (the base output while the adapter is live, the adapted one once merged), and a hook
registered on the wrapper sees what the model computes in either state."""

from __future__ import annotations

import torch
from torch import nn

import lowdim


def _adapted_model() -> tuple[nn.Sequential, lowdim.Adapters, list[torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3))
    early: list[torch.Tensor] = []
    model[0].register_forward_hook(lambda module, args, output: early.append(output.detach().clone()))
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"], seed=0)
    with torch.no_grad():
        for param in adapters.parameters():  # LoRA's up starts at 0: an update to see
            param.normal_(0, 0.5)
    late: list[torch.Tensor] = []
    model[0].register_forward_hook(lambda module, args, output: late.append(output.detach().clone()))
    return model, adapters, early, late


def test_a_hook_from_before_inject_sees_the_base_output_until_merged_and_one_after_sees_the_model_s():
    model, adapters, early, late = _adapted_model()
    x = torch.randn(4, 6)
    with torch.no_grad():
        base = model[0].base_layer(x)
        early.clear()
        adapted = model[0](x)
        assert not torch.allclose(base, adapted, atol=1e-4)  # the adapter changes the layer's output
        early.clear()
        late.clear()
        model(x)
        torch.testing.assert_close(early[-1], base)
        torch.testing.assert_close(late[-1], adapted)
        adapters.merge()
        early.clear()
        late.clear()
        model(x)
        torch.testing.assert_close(early[-1], adapted, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(late[-1], adapted, atol=1e-5, rtol=1e-5)
