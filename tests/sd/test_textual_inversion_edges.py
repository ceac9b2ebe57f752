"""Textual Inversion's edges a user relies on: every vector of a multi-vector identifier trains, Ctrl-C while -a
files load leaves no token behind, an export catches a clash on any vector's token, and a file on another text
encoder layer is refused naming the layer."""

from __future__ import annotations

import shutil

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it
from torch import nn
from transformers import CLIPTokenizer

import lowdim
from lowdim_sd.attaching import attach_adapters
from lowdim_sd.export import export_adapter
from lowdim_sd.loading import load_sd
from lowdim_sd.textual_inversion import EmbeddingError, read_embedding
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train


def test_every_vector_of_a_two_vector_identifier_trains(tiny_sd, model, tmp_path):
    refs = tmp_path / "refs"
    save_images(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1, refs, "me")
    job = TrainJob(model=str(tiny_sd), images=[refs], space="ti", space_options={"vectors": 2, "init_word": "face"},
                   out=tmp_path / "o", learning_rate=0.05, config=TrainConfig(steps=1, token="sks"))
    run_train(job, progress=False)
    vectors = read_embedding(tmp_path / "o" / "adapter.safetensors").vectors
    tokenizer, table = model.pipe.tokenizer, model.pipe.text_encoder.get_input_embeddings().weight
    face = table[tokenizer.convert_tokens_to_ids("face</w>")].detach()
    # Both start as 'face'; one Adam step moves a vector by about the rate only if its token is in the prompt.
    moved = [(row - face).abs().max().item() for row in vectors]
    assert min(moved) > 1e-2, moved


def test_ctrl_c_while_adapter_files_load_leaves_no_token_behind(tiny_sd, lidb_and_ti, monkeypatch):
    lidb, ti = lidb_and_ti
    model = load_sd(str(tiny_sd))
    tokens, rows = len(model.pipe.tokenizer), model.pipe.text_encoder.get_input_embeddings().weight.shape[0]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # the embedding (first) loads, then Ctrl-C lands in the LiDB file's load
        patch.setattr(lowdim, "load_adapter", interrupted)
        with pytest.raises(KeyboardInterrupt):
            attach_adapters(model, [ti, lidb])
    assert len(model.pipe.tokenizer) == tokens
    assert model.pipe.text_encoder.get_input_embeddings().weight.shape[0] == rows
    assert attach_adapters(model, [ti]) == ["sks"]  # not refused as 'already claimed' by the half load


def _embedding_file(path, layer: str, vectors: int, base_model: str = ""):
    """A TI adapter file of ``vectors`` vectors on the text encoder layer ``layer`` of a 50x32 stand-in, word zz."""
    encoder = nn.Module()
    encoder.embeddings = nn.Module()
    setattr(encoder.embeddings, layer, nn.Embedding(50, 32))
    stand_in = nn.ModuleDict({"text_encoder": encoder})
    targets = lowdim.LayerSet("e", (f"text_encoder.embeddings.{layer}",), types=("embedding",))
    lowdim.inject(stand_in, lowdim.get_space("ti", vectors=vectors), targets)
    return lowdim.save_adapter(path, stand_in, token="zz", base_model=base_model)


def test_export_refuses_a_later_vector_s_token_the_base_vocabulary_holds(tiny_sd, tmp_path):
    base = shutil.copytree(tiny_sd, tmp_path / "base")
    tokenizer = CLIPTokenizer.from_pretrained(str(base / "tokenizer"))
    tokenizer.add_tokens(["zz_1"])  # the second vector's name: diffusers' load_textual_inversion would refuse it
    tokenizer.save_pretrained(str(base / "tokenizer"))
    source = _embedding_file(tmp_path / "two.safetensors", "token_embedding", 2, base_model=str(base))
    with pytest.raises(EmbeddingError, match="zz_1"):
        export_adapter(source, tmp_path / "out.safetensors", fmt="diffusers")
    assert not (tmp_path / "out.safetensors").exists()


def test_a_ti_file_on_another_text_encoder_embedding_is_refused_naming_the_layer(tmp_path):
    path = _embedding_file(tmp_path / "pos.safetensors", "position_embedding", 1)
    with pytest.raises(EmbeddingError, match=r"text_encoder\.embeddings\.position_embedding is not a text encoder's "
                                             r"token embedding"):
        read_embedding(path)
