"""Re-running a notebook cell that attaches adapters (review AC3): the same file attached again is warned about,
naming the file and the name it already holds, and ``detach_adapters`` takes attached files off again, so a cell
that detaches and then attaches draws the same pictures however often it runs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.generate import GenerateConfig, attach_adapters, detach_adapters, draw_to_folder, generate
from lowdim_sd.loading import load_sd

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIG = GenerateConfig(prompts=["a [V] face"], steps=2, resolution=16)


def _pixels(model) -> np.ndarray:
    return np.asarray(generate(model, CONFIG)[0].image, dtype=int)


def test_attaching_a_file_again_warns_naming_it_and_its_name(tiny_sd, word_adapters):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [word_adapters[0]])
    again = rf"{word_adapters[0].name} is already attached as a0; attaching it again"
    with pytest.warns(UserWarning, match=again) as seen:
        assert attach_adapters(model, [word_adapters[0]]) == ["zwx"]
    assert len(seen) == 1 and "\n" not in str(seen[0].message)
    assert seen[0].filename == __file__  # points at the user's cell, not inside lowdim
    assert lowdim.Adapters(model.modules).names() == ["a0", "a1"]  # still added beside it, as documented


def test_attaching_another_file_beside_says_nothing(tiny_sd, word_adapters):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [word_adapters[0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attach_adapters(model, [(word_adapters[1], 0.5)])


def test_detach_then_attach_draws_the_same_however_often_the_cell_runs(tiny_sd, word_adapters):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    base = _pixels(model)
    attach_adapters(model, [word_adapters[0]])
    once = _pixels(model)
    for _ in range(2):  # the cell, re-run
        detach_adapters(model)
        attach_adapters(model, [word_adapters[0]])
        assert np.array_equal(_pixels(model), once)
    assert detach_adapters(model) == ["a0"]
    assert np.array_equal(_pixels(model), base)


def test_detach_takes_off_only_what_attach_put_on(tiny_sd, word_adapters):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [word_adapters[0], (word_adapters[1], 0.5)])
    lowdim.load_adapter(word_adapters[1], model.modules, name="mine")
    assert detach_adapters(model) == ["a0", "a1"]
    assert lowdim.Adapters(model.modules).names() == ["mine"]
    assert detach_adapters(model) == []


def test_detach_by_name_keeps_the_others_and_the_record(tiny_sd, word_adapters, tmp_path):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [word_adapters[0], (word_adapters[1], 0.5)])
    assert detach_adapters(model, ["a0"]) == ["a0"]
    assert detach_adapters(model, "a1") == ["a1"]
    attach_adapters(model, [(word_adapters[1], 0.5)])
    draw_to_folder(model, CONFIG, tmp_path)
    recorded = json.loads((tmp_path / "prompts.json").read_text())["settings"]["adapters"]
    assert recorded == [{"file": str(word_adapters[1]), "scale": 0.5, "token": "qpv"}]


def test_the_same_file_by_another_path_is_warned_about_once(tiny_sd, word_adapters, monkeypatch):
    monkeypatch.chdir(word_adapters[0].parent.parent)
    relative = word_adapters[0].relative_to(Path.cwd())  # as a notebook beside the folder writes it
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [relative])
    for again in (word_adapters[0], relative.parent / ".." / relative):  # then absolute, then through '..'
        with pytest.warns(UserWarning, match="is already attached as a") as seen:
            attach_adapters(model, [again])
        assert len(seen) == 1


def test_a_name_given_twice_is_detached_once(tiny_sd, word_adapters):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [word_adapters[0], word_adapters[1]])
    assert detach_adapters(model, ["a0", "a0"]) == ["a0"]
    assert lowdim.Adapters(model.modules).names() == ["a1"]


def test_a_detached_name_loaded_again_by_hand_is_not_taken_for_the_detached_file(tiny_sd, word_adapters, tmp_path):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [word_adapters[0]])
    detach_adapters(model)
    lowdim.load_adapter(word_adapters[1], model.modules, name="a0")  # the freed name, not through attach_adapters
    draw_to_folder(model, CONFIG, tmp_path)
    recorded = json.loads((tmp_path / "prompts.json").read_text())["settings"]["adapters"]
    assert recorded == [{"file": None, "scale": None, "token": "qpv", "adapter": "a0"}]
    assert detach_adapters(model) == []  # detach takes off what attach put on, not what was loaded by hand


def test_detaching_a_name_not_on_the_model_is_one_line_and_removes_nothing(tiny_sd, word_adapters):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [word_adapters[0], word_adapters[1]])
    with pytest.raises(LowdimError, match=r"no adapter named 'a7' .*: a0, a1") as error:
        detach_adapters(model, ["a1", "a7"])
    assert "\n" not in str(error.value)
    assert lowdim.Adapters(model.modules).names() == ["a0", "a1"]


def test_an_embedding_attached_again_is_refused_naming_the_file(tiny_sd, word_adapters, embedding):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [embedding])
    with pytest.raises(LowdimError, match=rf"{embedding.name} is already attached \(its token 'vqz'\)") as error:
        attach_adapters(model, [word_adapters[0], embedding])
    assert "\n" not in str(error.value) and lowdim.Adapters(model.modules).names() == []  # all or nothing
    assert detach_adapters(model) == []  # the embedding has no adapter name to take off
