"""A broad pattern that matches no adaptable layer names the layers the user meant: on GPT-2 the Conv1Ds."""

from __future__ import annotations

import pytest

import lowdim


@pytest.mark.parametrize("pattern", ["*", "h.*", "re:.*"])
def test_a_broad_pattern_on_gpt2_names_a_conv1d_and_not_the_embedding_before_it(pattern):
    from transformers import GPT2Config, GPT2Model

    model = GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    with pytest.raises(lowdim.LowdimError) as refused:
        lowdim.inject(model, lowdim.get_space("lora"), [pattern])
    message = str(refused.value)
    assert "is a transformers Conv1D (GPT-2's transposed linear layer), which lowdim does not adapt" in message
    assert "Embedding" not in message
