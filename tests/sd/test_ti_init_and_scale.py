"""Textual Inversion's two numbers a user sets: the init word its vectors start from, and the :SCALE an embedding
is drawn or merged at."""

from __future__ import annotations

import pytest
import torch

import lowdim
from lowdim_sd.attaching import attach_adapters
from lowdim_sd.loading import load_sd
from lowdim_sd.textual_inversion import read_embedding, ti_trainable

pytestmark = pytest.mark.usefixtures("one_thread")


def _table(model) -> torch.Tensor:
    return model.pipe.text_encoder.get_input_embeddings().weight


@pytest.mark.parametrize("word", ["face", "hat"])
def test_every_new_vector_starts_at_the_init_words_own_row(tiny_sd, word):
    model = load_sd(str(tiny_sd))
    tokenizer = model.pipe.tokenizer
    (piece,) = tokenizer.tokenize(word)
    row = _table(model)[tokenizer.convert_tokens_to_ids(piece)].detach().clone()
    ti_trainable(model, lowdim.get_space("ti", vectors=3, init_word=word), token="sks")
    (vectors,) = (p.detach() for p in lowdim.Adapters(model.modules).parameters("subject"))
    assert vectors.shape == (3, row.numel())
    assert all(torch.equal(vector, row) for vector in vectors)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_an_embeddings_scale_multiplies_the_rows_it_loads_with(tiny_sd, embedding, scale):
    full = read_embedding(embedding).vectors
    assert full.abs().max() > 0
    assert torch.equal(read_embedding(embedding, scale).vectors, full * scale)
    model = load_sd(str(tiny_sd))  # generate and merge both load an embedding through attach_adapters
    (token,) = attach_adapters(model, [(embedding, scale)])
    ids = model.pipe.tokenizer.convert_tokens_to_ids([token])
    torch.testing.assert_close(_table(model)[ids].detach(), full * scale, atol=0, rtol=1e-6)
