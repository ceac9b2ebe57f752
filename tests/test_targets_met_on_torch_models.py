"""What a target pattern says on models lowdim cannot adapt whole: an nn.TransformerEncoder's attention (review CH,
finding 4) and a layer held under a second name (finding 6)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import LowdimError


def encoder() -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


def wrapped(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if getattr(module, "is_lowdim_wrapper", False)]


def test_star_on_a_transformer_encoder_warns_that_attention_is_skipped():
    model = encoder()
    with pytest.warns(UserWarning) as caught:
        lowdim.inject(model, lowdim.get_space("lora"), ["*"])
    lines = [str(w.message) for w in caught if "MultiheadAttention" in str(w.message)]
    assert len(lines) == 1, [str(w.message) for w in caught]
    assert "2 nn.MultiheadAttention" in lines[0] and "layers.0.self_attn" in lines[0]
    assert "4 layers get the adapter" in lines[0] and "\n" not in lines[0]
    assert wrapped(model) == [f"layers.{i}.linear{j}" for i in (0, 1) for j in (1, 2)]


def test_a_pattern_that_meets_no_attention_adapts_in_silence():
    model = encoder()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lowdim.inject(model, lowdim.get_space("lora"), ["*.linear1", "*.linear2"])
    assert len(wrapped(model)) == 4


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 5)
        self.b = self.a
        self.out = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.b(torch.relu(self.a(x)))))


def test_a_second_name_of_a_layer_is_refused_naming_the_first():
    model = Twice()
    with pytest.raises(LowdimError) as refused:
        lowdim.inject(model, lowdim.get_space("lora"), ["b"])
    message = str(refused.value)
    assert "'b'" in message and "same" in message and "target 'a'" in message and "\n" not in message
    assert not wrapped(model)
    lowdim.inject(model, lowdim.get_space("lora"), ["a"])  # the first name takes both places
    assert model.a is model.b and getattr(model.b, "is_lowdim_wrapper", False)
