"""A scale sweep with `lowdim generate`: one file given twice is refused with the sum it would act at and how to
compare scales; a second run into the same -o that replaces pictures drawn with other settings says so; an
adapter whose word no prompt names is warned about (review DT 4, 5)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from PIL import Image

import lowdim
from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.adapter_list import check_adapter_list
from lowdim_sd.generate import GenerateConfig, Generated, save_generated, warn_about_tokens
from lowdim_sd.loading import load_sd


@pytest.mark.parametrize(("scales", "total"), [((0.5, 1.0), "1.5"), ((0.5, 1.0, 2.0), "3.5"), ((0.1, 0.2), "0.3")])
def test_a_file_given_twice_says_the_sum_it_would_act_at_and_how_to_compare(scales, total):
    path = Path("me/adapter.safetensors")
    with pytest.raises(LowdimError) as refused:
        check_adapter_list([(path, scale) for scale in scales])
    line = str(refused.value)
    assert "\n" not in line and f"{path}:{total}" in line and f"{path}:2.0" not in line
    assert "sum of the scales" in line and "once per scale" in line and "its own -o" in line


def _settings(scale: float, steps: int = 30) -> dict:
    return {"model": "tinyfaces", "adapters": [{"file": "me/adapter.safetensors", "scale": scale, "token": "sks"}],
            "token": "sks", "steps": steps, "guidance": 5.0, "scheduler": "ddim", "negative_prompt": "",
            "resolution": 32, "parts": {"text_encoder_scale": 1.0, "adapter_start": 0.0, "adapter_end": 1.0,
                                        "cross_attention_scale": 1.0}}


def _save(out: Path, settings: dict, seeds=(0,)) -> list[str]:
    pictures = [Generated("a [V] face", seed, Image.new("RGB", (8, 8), (seed, 0, 0))) for seed in seeds]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_generated(pictures, out, settings=settings)
    return [" ".join(str(w.message).split()) for w in caught]


def test_a_picture_replaced_by_one_of_other_settings_is_said_once(tmp_path):
    out = tmp_path / "sc"
    assert _save(out, _settings(0.5), seeds=(0, 1)) == []
    said = [line for line in _save(out, _settings(1.0), seeds=(0, 1)) if "drawn with other settings" in line]
    assert len(said) == 1 and "replaced 2 pictures drawn with other settings" in said[0]
    assert "me/adapter.safetensors:0.5 -> me/adapter.safetensors:1" in said[0]
    assert "give each call its own out_dir" in said[0]  # a Python call
    assert sorted(p.name for p in out.iterdir()) == ["000-a--v--face-seed0.png", "001-a--v--face-seed1.png",
                                                     "grid.png", "prompts.json"]  # nothing new on disk
    said = [line for line in _save(out, _settings(1.0, steps=10)) if "drawn with other settings" in line]
    assert len(said) == 1 and "replaced 1 picture drawn" in said[0] and "steps 30 -> 10" in said[0]


@pytest.mark.parametrize("earlier", [
    lambda out: _save(out, _settings(1.0)),  # the same settings: the same picture drawn again
    lambda out: out.mkdir(),  # nothing there
    lambda out: (out.mkdir(), (out / "000-a--v--face-seed0.png").write_bytes(b"x")),  # no prompts.json
    lambda out: (_save(out, _settings(0.5)), (out / "prompts.json").write_text("{", encoding="utf-8")),
])
def test_a_rerun_with_the_same_settings_or_no_record_says_nothing_of_replacing(tmp_path, earlier):
    out = tmp_path / "sc"
    earlier(out)
    assert not [line for line in _save(out, _settings(1.0)) if "drawn with other settings" in line]


@pytest.fixture(scope="module")
def sks_adapter(tiny_sd, tmp_path_factory):
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    lowdim.inject(model.modules, lowdim.get_space("lidb"), ["*attn1.to_q"], seed=0)
    return lowdim.save_adapter(tmp_path_factory.mktemp("sweep") / "adapter.safetensors", model.modules, token="sks")


def test_a_scale_sweep_into_one_folder_warns_on_the_second_run(tiny_sd, sks_adapter, tmp_path, capsys, one_thread):
    def run(scale: str) -> str:
        code = main(["generate", "-m", str(tiny_sd), "-a", f"{sks_adapter}:{scale}", "-p", "a [V] face", "--steps",
                     "1", "--resolution", "16", "--device", "cpu", "--dtype", "fp32", "-o", str(tmp_path / "sc")])
        assert code == 0
        return " ".join(capsys.readouterr().err.split())

    assert "drawn with other settings" not in run("0.5")
    said = run("1.0")
    assert "replaced 1 picture drawn with other settings" in said and "give each run its own -o" in said
    record = json.loads((tmp_path / "sc" / "prompts.json").read_text(encoding="utf-8"))
    assert record["settings"]["adapters"][0]["scale"] == 1.0


def _token_lines(prompts: list[str], tokens: list[str], flag: str | None = None) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_about_tokens(GenerateConfig(prompts=prompts, token=flag), tokens)
    return [str(w.message) for w in caught]


def test_an_adapter_whose_word_no_prompt_names_is_warned_about_once():
    lines = _token_lines(["a face at night", "a face in the rain"], ["sks"])
    assert lines == ["no prompt names [V] (sks): the adapter's subject is not called"]


@pytest.mark.parametrize(("prompts", "tokens"), [
    (["a [V] face"], ["sks"]),  # [V] calls it
    (["a face at night", "a SKS face"], ["sks"]),  # its word typed out, in one prompt of two
    (["a watercolor face"], [""]),  # a style LoRA that records no word: nothing to call
    (["a face"], []),  # no adapter
])
def test_a_prompt_that_calls_the_subject_or_an_adapter_without_a_word_says_nothing(prompts, tokens):
    assert not [line for line in _token_lines(prompts, tokens) if "no prompt names" in line]


def test_a_second_adapters_word_that_no_prompt_names_is_said_too():
    lines = [line for line in _token_lines(["a [V] face"], ["sks", "qpv"]) if "no prompt names" in line]
    assert len(lines) == 1 and "qpv" in lines[0] and "'sks'" in lines[0]
