"""What a pattern selects on models with layers lowdim cannot adapt is said, not left silent: a pattern that
meets GPT-2's Conv1Ds beside an adaptable layer warns naming how many and one of them, and a pattern naming an
nn.MultiheadAttention (or its in_proj_weight, a bare parameter) says that no part of an MHA can be adapted, and why."""

from __future__ import annotations

import warnings

import pytest
from torch import nn

import lowdim
from lowdim.errors import LowdimError


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32))


@pytest.mark.parametrize("pattern", ["*", "re:.*"])
def test_a_broad_pattern_on_gpt2_warns_about_the_conv1ds_it_skips(pattern):
    model = gpt2()
    with pytest.warns(UserWarning, match=r"also match 8 transformers Conv1D layers \(e\.g\. "
                                         r"transformer\.h\.0\.attn\.c_attn\), which lowdim does not adapt") as caught:
        adapters = lowdim.inject(model, lowdim.get_space("lora"), [pattern])
    assert list(adapters.slots()) == ["lm_head"]
    assert "lm_head" in str(caught[0].message) and "\n" not in str(caught[0].message)
    assert caught[0].filename == __file__  # the user's call, not a line inside lowdim


def test_a_broad_pattern_on_a_conv_net_warns_about_the_convolutions_it_skips():
    # Only a 1x1 Conv2d with stride 1, no padding and one group is linear per pixel: "*" adapts that one and says
    # which others it met, as it does GPT-2's Conv1Ds (review DE 1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1, stride=2), nn.Conv1d(8, 8, 1))
    with pytest.warns(UserWarning, match=r"also match 3 convolutions \(e\.g\. 0 \(3x3 nn\.Conv2d\)\), which lowdim "
                                         r"does not adapt .*: only 1 layer gets the adapter, e\.g\. 1$") as caught:
        adapters = lowdim.inject(model, lowdim.get_space("lora"), ["*"])
    assert list(adapters.slots()) == ["1"] and caught[0].filename == __file__
    with warnings.catch_warnings():  # a pattern naming only the adaptable one says nothing
        warnings.simplefilter("error")
        lowdim.inject(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1)), lowdim.get_space("lora"), ["1"])


def test_a_pattern_without_conv1ds_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lowdim.inject(gpt2(), lowdim.get_space("lora"), ["lm_head"])


class WithAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 16)


@pytest.mark.parametrize("pattern", ["attn.in_proj_weight", "*.in_proj_weight", "attn.in_proj_bias"])
def test_a_pattern_naming_an_mha_parameter_says_it_is_a_parameter_no_part_of_which_adapts(pattern):
    with pytest.raises(LowdimError) as refused:
        lowdim.inject(WithAttention(), lowdim.get_space("lora"), [pattern])
    message = str(refused.value)
    assert "is a parameter of the nn.MultiheadAttention 'attn', not a layer" in message, message
    assert "no part of an nn.MultiheadAttention can carry adapters" in message and "\n" not in message


def test_a_pattern_naming_the_out_proj_weight_says_the_same():
    with pytest.raises(LowdimError, match=r"'attn\.out_proj\.weight' is a parameter of the nn\.MultiheadAttention "
                                          r"'attn', not a layer, and no part"):
        lowdim.inject(WithAttention(), lowdim.get_space("lora"), ["attn.out_proj.weight"])


def test_a_pattern_naming_the_mha_itself_says_no_part_of_it_adapts():
    with pytest.raises(LowdimError, match=r"'attn' is an nn\.MultiheadAttention: no part of an "
                                          r"nn\.MultiheadAttention can carry adapters"):
        lowdim.inject(WithAttention(), lowdim.get_space("lora"), ["attn"])


def test_a_pattern_naming_a_linear_layers_weight_points_to_the_layer():
    with pytest.raises(LowdimError, match=r"'fc\.weight' is a parameter of layer 'fc': patterns name layers, "
                                          r"so target 'fc'"):
        lowdim.inject(WithAttention(), lowdim.get_space("lora"), ["fc.weight"])
