"""Pretrained weights load from safetensors only: a model folder (or hub repository) holding only a pickled
``*.bin`` is refused, never unpickled, wherever lowdim loads one (SD pipelines, image encoders, eval models)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


@pytest.fixture
def pickled_vit(tmp_path) -> Path:
    """A tiny ViT folder whose weights are only a pickle, as old hub repositories hold them."""
    from transformers import ViTConfig, ViTModel

    folder = tmp_path / "pickled-vit"
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=37)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    weights = folder / "model.safetensors"
    torch.save(load_file(str(weights)), folder / "pytorch_model.bin")
    weights.unlink()
    return folder


@pytest.fixture
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(torch, "load", refuse)


def test_an_eval_model_folder_of_pickles_is_skipped_without_unpickling(pickled_vit, no_unpickling):
    from lowdim.metrics import MetricUnavailable
    from lowdim_sd.eval.paper_metrics import DinoMetric

    with pytest.raises(MetricUnavailable, match=f"could not load the DINO model from {pickled_vit}"):
        DinoMetric(model=str(pickled_vit), device="cpu")


def test_an_image_encoder_folder_of_pickles_is_refused_without_unpickling(pickled_vit, no_unpickling):
    from lowdim.errors import LowdimError
    from lowdim.hyper.encoder import build_vision_model

    with pytest.raises(LowdimError, match=f"could not load the image encoder '{pickled_vit}': .*safetensors"):
        build_vision_model(str(pickled_vit), None)


def test_a_hub_pipeline_is_asked_for_safetensors_only(monkeypatch):
    from diffusers import StableDiffusionPipeline

    from lowdim_sd.loading import load_pipeline

    asked = {}

    def remember(source, **kwargs):
        asked.update(kwargs, source=source)
        raise OSError("not in the cache")

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", remember)
    with pytest.raises(Exception, match="could not load 'someone/some-model'"):
        load_pipeline("someone/some-model", torch.float32)
    assert asked["source"] == "someone/some-model" and asked["use_safetensors"] is True
