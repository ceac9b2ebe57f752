"""An empty Textual Inversion token (review BS16): the shared token check says so, and every way a token comes in
(a file to export or draw with, a token to train) refuses it in one line instead of adding a nameless word."""

from __future__ import annotations

import shutil

import pytest
from safetensors_edit import rewrite

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.export import export_adapter
from lowdim_sd.loading import load_sd
from lowdim_sd.textual_inversion import EmbeddingError, load_embedding, ti_trainable, token_problem


@pytest.fixture
def nameless(lidb_and_ti, tmp_path):
    return rewrite(shutil.copy(lidb_and_ti[1], tmp_path / "ti.safetensors"), token="")


def test_the_shared_check_calls_an_empty_token_empty():
    assert token_problem("") == "is empty"


@pytest.mark.parametrize("fmt", ["diffusers", "a1111"])
def test_export_refuses_a_file_whose_token_is_empty_and_writes_nothing(nameless, tmp_path, fmt):
    target = tmp_path / "v.safetensors"
    with pytest.raises(EmbeddingError, match=rf"^{nameless}: the file names no token for its vectors$"):
        export_adapter(nameless, target, fmt=fmt)
    assert not target.exists()


def test_drawing_with_a_file_whose_token_is_empty_adds_no_word(nameless, tiny_sd):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    size = len(model.pipe.tokenizer)
    with pytest.raises(EmbeddingError, match="names no token"):
        load_embedding(model, nameless)
    assert len(model.pipe.tokenizer) == size


def test_training_an_empty_token_is_refused(tiny_sd):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    with pytest.raises(LowdimError, match=r"the identifier '' must be one word"):
        ti_trainable(model, lowdim.get_space("ti", vectors=1, init_word="face"), token="")
