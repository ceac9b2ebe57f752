"""Attaching from Python as a notebook does (review R6, R8): a second ``attach_adapters`` call on the same model adds
its files beside the first's, prompts.json lists every adapter the pictures were drawn with, a bare path reads as
scale 1.0 (as diffusers' ``load_lora_weights(path)``), and a model without weights is refused before drawing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.generate import GenerateConfig, attach_adapters, draw_to_folder, generate
from lowdim_sd.loading import SDModel, load_sd
from lowdim_sd.tiny import build_tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIG = GenerateConfig(prompts=["a [V] face"], steps=2, resolution=16)


def _pixels(model) -> np.ndarray:
    return np.asarray(generate(model, CONFIG)[0].image, dtype=int)


def _recorded(model, out) -> list[dict]:
    draw_to_folder(model, CONFIG, out)
    return json.loads((out / "prompts.json").read_text())["settings"]["adapters"]


def test_a_second_attach_adds_its_file_beside_the_first(tiny_sd, word_adapters):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    assert attach_adapters(model, [(word_adapters[0], 1.0)]) == ["zwx"]
    assert attach_adapters(model, [(word_adapters[1], 0.5)]) == ["qpv"]  # was refused: 'a0' already exists, pass name=
    assert lowdim.Adapters(model.modules).names() == ["a0", "a1"]
    together = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(together, [(word_adapters[0], 1.0), (word_adapters[1], 0.5)])
    assert np.array_equal(_pixels(model), _pixels(together))


def test_prompts_json_lists_every_adapter_the_pictures_were_drawn_with(tiny_sd, word_adapters, tmp_path):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [(word_adapters[0], 1.0)])
    attach_adapters(model, [(word_adapters[1], 0.5)])
    assert _recorded(model, tmp_path / "two") == [{"file": str(word_adapters[0]), "scale": 1.0, "token": "zwx"},
                                                  {"file": str(word_adapters[1]), "scale": 0.5, "token": "qpv"}]
    lowdim.Adapters(model.modules).delete("a0")
    attach_adapters(model, [(word_adapters[2], 0.8)])  # takes the freed name 'a0': the deleted file must not come back
    recorded = [entry["file"] for entry in _recorded(model, tmp_path / "swap")]
    assert recorded == [str(word_adapters[1]), str(word_adapters[2])]


def test_an_adapter_loaded_by_hand_is_recorded_by_its_name(tiny_sd, word_adapters, tmp_path):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [(word_adapters[0], 1.0)])
    lowdim.load_adapter(word_adapters[1], model.modules, name="mine")
    assert _recorded(model, tmp_path / "out") == [
        {"file": str(word_adapters[0]), "scale": 1.0, "token": "zwx"},
        {"file": None, "scale": None, "token": "qpv", "adapter": "mine"}]  # no file or scale to trace it by


@pytest.mark.parametrize("given", ["str", "path", "bare"])
def test_a_bare_path_is_an_adapter_at_scale_one(tiny_sd, word_adapters, given):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    arg = {"str": [str(word_adapters[0])], "path": [word_adapters[0]], "bare": str(word_adapters[0])}[given]
    assert attach_adapters(model, arg) == ["zwx"]
    scaled = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(scaled, [(word_adapters[0], 1.0)])
    assert np.array_equal(_pixels(model), _pixels(scaled))


@pytest.mark.parametrize("entry", [(1, 2, 3), 3, ("a.safetensors", "half")])
def test_an_entry_of_another_form_is_one_line_naming_the_form(model, entry):
    with pytest.raises(LowdimError, match=r"adapters takes .*path.*\(path, scale\)") as error:
        attach_adapters(model, [entry])
    assert "\n" not in str(error.value) and lowdim.Adapters(model.modules).names() == []


def test_generate_on_a_model_without_weights_is_refused_before_drawing():
    with torch.device("meta"):
        pipe = build_tiny_pipeline()
    model = SDModel(pipe, "tiny", "tiny", torch.device("meta"), torch.float32)
    with pytest.raises(LowdimError, match="meta device.*load the model's weights first") as error:
        generate(model, CONFIG)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("flag", [True, False])
def test_a_bool_for_a_scale_is_refused_not_drawn_at_one_or_zero(tiny_sd, word_adapters, flag):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    with pytest.raises(LowdimError, match=r"adapters takes .*\(path, scale\) pair") as error:
        attach_adapters(model, [(word_adapters[0], flag)])
    assert "\n" not in str(error.value) and lowdim.Adapters(model.modules).names() == []


def test_an_embedding_whose_token_was_taken_back_is_not_recorded(tiny_sd, word_adapters, embedding, tmp_path):
    from lowdim_sd.embedding_undo import tokens_undone

    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [(word_adapters[0], 1.0)])
    with tokens_undone(model):  # the tokenizer and token table put back as they were: 'vqz' gone
        attach_adapters(model, [(embedding, 1.0)])
        recorded = [entry["file"] for entry in _recorded(model, tmp_path / "with")]
        assert recorded == [str(word_adapters[0]), str(embedding)]
    assert "vqz" not in model.pipe.tokenizer.get_vocab()
    assert _recorded(model, tmp_path / "without") == [{"file": str(word_adapters[0]), "scale": 1.0, "token": "zwx"}]
