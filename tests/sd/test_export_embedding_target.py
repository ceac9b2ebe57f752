"""A Textual Inversion export is checked against the model its file names (``base_model``) where that model's
tokenizer and text-encoder config are on this machine: a token its vocabulary already holds (which diffusers'
``load_textual_inversion`` refuses) or vectors of another width (which every reader refuses) are one line before
anything is written, not a surprise in another tool."""

from __future__ import annotations

import shutil

import pytest
from safetensors_edit import rewrite
from torch import nn

import lowdim
from lowdim_sd.export import export_adapter
from lowdim_sd.textual_inversion import EmbeddingError


@pytest.fixture
def embedding_file(lidb_and_ti, tiny_sd, tmp_path):
    """The tiny model's one-vector embedding, recording the tiny model's folder as its base model."""
    return rewrite(shutil.copy(lidb_and_ti[1], tmp_path / "ti.safetensors"), base_model=str(tiny_sd))


def _embedding_of_width(path, width: int, base_model: str):
    """A TI file of ``width``-wide vectors that says it was made for ``base_model``."""
    encoder = nn.Module()
    encoder.embeddings = nn.Module()
    encoder.embeddings.token_embedding = nn.Embedding(50, width)
    model = nn.ModuleDict({"text_encoder": encoder})
    targets = lowdim.LayerSet("e", ("text_encoder.embeddings.token_embedding",), types=("embedding",))
    lowdim.inject(model, lowdim.get_space("ti"), targets)
    return lowdim.save_adapter(path, model, token="zz", base_model=base_model)


def test_a_token_of_the_base_model_s_vocabulary_is_refused_before_writing(embedding_file, tiny_sd, tmp_path):
    rewrite(embedding_file, token="a")  # every byte is a token of CLIP's vocabulary
    target = tmp_path / "a.safetensors"
    with pytest.raises(EmbeddingError) as refused:
        export_adapter(embedding_file, target, fmt="diffusers")
    message = str(refused.value)
    assert message.startswith(f"{embedding_file}: its token 'a' is already a token of the vocabulary of ")
    assert str(tiny_sd) in message and "load_textual_inversion" in message and "\n" not in message
    assert not target.exists()


def test_an_a1111_embedding_is_named_by_its_file_so_its_token_is_not_checked(embedding_file, tmp_path):
    rewrite(embedding_file, token="a")
    assert export_adapter(embedding_file, tmp_path / "mine.safetensors", fmt="a1111").is_file()


@pytest.mark.parametrize("fmt", ["diffusers", "a1111"])
def test_vectors_of_another_width_than_the_base_model_s_are_refused_naming_both(tiny_sd, tmp_path, fmt):
    source = _embedding_of_width(tmp_path / "wide.safetensors", 48, str(tiny_sd))
    target = tmp_path / "wide.out.safetensors"
    with pytest.raises(EmbeddingError) as refused:
        export_adapter(source, target, fmt=fmt)
    message = str(refused.value)
    assert message.startswith(f"{source}: its vectors are 48 wide, but the text encoder of its base model ")
    assert "is 32 wide" in message and "\n" not in message
    assert not target.exists()


def test_a_registered_base_model_is_checked_from_its_own_folder(embedding_file, tmp_path):
    rewrite(embedding_file, base_model="tinyfaces")  # the tiny model's 32-wide vectors; TinyFaces' are 128 wide
    with pytest.raises(EmbeddingError, match="its vectors are 32 wide, but the text encoder of its base model "
                                             "tinyfaces is 128 wide"):
        export_adapter(embedding_file, tmp_path / "a.safetensors", fmt="a1111")


@pytest.mark.parametrize("base_model", ["", "someone/not-cached-here", "/no/such/folder", "x" * 5000, "a\x00b"],
                         ids=["none", "uncached-hub-id", "missing-folder", "5000-characters", "nul"])
def test_a_base_model_not_on_this_machine_leaves_the_check_to_the_reader(embedding_file, tmp_path, base_model):
    rewrite(embedding_file, token="a", base_model=base_model)
    assert export_adapter(embedding_file, tmp_path / "a.safetensors", fmt="diffusers").is_file()


def test_the_embedding_the_base_model_takes_still_exports(embedding_file, tmp_path):
    assert export_adapter(embedding_file, tmp_path / "sks.safetensors", fmt="diffusers").is_file()
