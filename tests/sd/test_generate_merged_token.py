"""`lowdim generate -m MERGED`: [V] is the word the merged model was taught, read from the record merge wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lowdim
from lowdim_cli.main import main
from lowdim_sd.drawing_record import drawing_record
from lowdim_sd.generate import GenerateConfig, generate
from lowdim_sd.loading import load_sd
from lowdim_sd.merged_model import save_merged


@pytest.fixture(scope="module")
def adapters(tiny_sd, tmp_path_factory):
    """Two adapters on the tiny model, taught 'ohwx' and 'qpv'."""
    folder = tmp_path_factory.mktemp("taught")
    paths = []
    for index, token in enumerate(("ohwx", "qpv")):
        model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
        lowdim.inject(model.modules, lowdim.get_space("lidb"), ["*attn1.to_q"], seed=index)
        paths.append(lowdim.save_adapter(folder / f"{token}.safetensors", model.modules, token=token))
    return paths


@pytest.fixture(scope="module")
def merged(tiny_sd, adapters, tmp_path_factory):
    """``merged(fmt, *indexes)``: a model `lowdim merge` wrote from those adapters, made once each."""
    folder = tmp_path_factory.mktemp("merged")
    made: dict[tuple, str] = {}

    def make(fmt: str, *indexes: int) -> str:
        if (fmt, indexes) not in made:
            name = "-".join(map(str, indexes)) + (".safetensors" if fmt == "single-file" else "")
            model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
            written, _ = save_merged(model, [(adapters[i], 1.0) for i in indexes], folder / fmt / name, fmt)
            made[fmt, indexes] = str(written)
        return made[fmt, indexes]

    return make


def _generate(model: str, out, *flags) -> dict:
    code = main(["generate", "-m", model, "-p", "a [V] face", "--steps", "2", "--resolution", "16",
                 "--device", "cpu", "--dtype", "fp32", "-o", str(out), *flags])
    assert code == 0
    return json.loads((out / "prompts.json").read_text(encoding="utf-8"))["settings"]


@pytest.mark.parametrize("fmt", ["single-file", "diffusers"])
def test_v_becomes_the_token_the_merged_model_was_taught(merged, tmp_path, capsys, one_thread, fmt):
    settings = _generate(merged(fmt, 0), tmp_path / "out")
    said = " ".join(capsys.readouterr().err.split())
    assert settings["token"] == "ohwx"
    assert "never taught" not in said and "Warning" not in said


def test_v_draws_the_merged_models_word_not_only_records_it(merged, one_thread):
    # The record alone cannot tell: it names the word apart from the draw. The pictures must be the word's.
    model = load_sd(merged("single-file", 0), device="cpu", dtype="fp32")

    def pixels(**token) -> np.ndarray:
        config = GenerateConfig(prompts=["a [V] face"], steps=2, resolution=16, guidance=1.0, **token)
        return np.asarray(generate(model, config)[0].image, dtype=np.int16)

    drawn = pixels()
    assert np.array_equal(drawn, pixels(token="ohwx"))
    assert not np.array_equal(drawn, pixels(token="sks"))  # the two words draw apart, so the check above can fail


def test_token_flag_still_wins_over_the_merged_models_token(merged, tmp_path, capsys, one_thread):
    settings = _generate(merged("single-file", 0), tmp_path / "out", "--token", "zzq")
    assert settings["token"] == "zzq"
    assert "Warning" not in capsys.readouterr().err


def test_a_model_taught_several_words_draws_the_first_and_says_so(merged, tmp_path, capsys, one_thread):
    settings = _generate(merged("diffusers", 0, 1), tmp_path / "out")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    said = " ".join(" ".join(lines).split())
    assert settings["token"] == "ohwx"
    assert "never taught" not in said
    assert "[V] becomes 'ohwx'" in said and "'qpv'" in said
    assert sum("Warning" in line for line in lines) == 1


def test_an_adapter_on_a_merged_model_keeps_the_adapters_rule(merged, adapters, tmp_path, capsys, one_thread):
    settings = _generate(merged("single-file", 0), tmp_path / "out", "-a", str(adapters[1]))
    assert settings["token"] == "qpv"  # [V] is the first adapter's own word, as on any model
    assert [a["token"] for a in settings["adapters"]] == ["qpv"]


def test_a_plain_model_still_warns_and_draws_sks(tiny_sd, tmp_path, capsys, one_thread):
    settings = _generate(str(tiny_sd), tmp_path / "out")
    assert settings["token"] == "sks"
    assert "no --adapter: [V] becomes 'sks', a word this model was never taught" in " ".join(
        capsys.readouterr().err.split())


def test_generate_in_python_reads_the_merged_models_token(merged):
    model = load_sd(merged("single-file", 0), device="cpu", dtype="fp32")
    assert drawing_record(model, GenerateConfig(prompts=["a [V] face"]))["token"] == "ohwx"


def test_a_merged_model_that_records_no_token_says_so_not_never_taught(tiny_sd, tmp_path):
    from lowdim_sd.generate import attach_adapters, token_warnings

    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    lowdim.inject(model.modules, lowdim.get_space("lidb"), ["*attn1.to_q"], seed=3)
    tokenless = lowdim.save_adapter(tmp_path / "tokenless.safetensors", model.modules)  # records no token
    written, _ = save_merged(load_sd(str(tiny_sd), device="cpu", dtype="fp32"), [(tokenless, 1.0)],
                             tmp_path / "m.safetensors")
    merged_model = load_sd(str(written), device="cpu", dtype="fp32")
    lines = token_warnings(["a [V] face"], attach_adapters(merged_model, []), None, merged_model.taught)
    assert len(lines) == 1 and lines[0].startswith("this merged model records no token: [V] becomes 'sks'")


def test_an_adapter_that_learned_the_merged_models_word_is_warned_about():
    from lowdim_sd.generate import token_warnings

    lines = token_warnings(["a [V] face"], ["ohwx"], None, ["ohwx", "qpv"])
    assert lines == ["an adapter and the merged model both learned the word 'ohwx': [V] calls both at once, so "
                     "their subjects blend; personalize the adapter with its own --token to draw them apart"]
    assert token_warnings(["a [V] face"], ["zzz"], None, ["ohwx"]) == []  # words apart: nothing to say
