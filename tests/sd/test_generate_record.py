"""`lowdim generate` records in prompts.json how its pictures were drawn, lays grid.png out a row per prompt and a
column per seed, and `lowdim eval` still reads the folder."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import lowdim
from lowdim_cli.main import main
from lowdim_sd.eval.folder import load_eval_set
from lowdim_sd.loading import load_sd


@pytest.fixture(scope="module")
def two_adapters(tiny_sd, tmp_path_factory):
    folder = tmp_path_factory.mktemp("record")
    paths = []
    for index, token in enumerate(("zwx", "qpv")):
        model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
        lowdim.inject(model.modules, lowdim.get_space("lidb"), ["*attn1.to_q"], seed=index)
        (folder / f"me{index}").mkdir()
        paths.append(lowdim.save_adapter(folder / f"me{index}" / "adapter.safetensors", model.modules, token=token))
    return paths


def _generate(tiny_sd, adapters, scales, out, *flags) -> dict:
    pairs = [arg for path, scale in zip(adapters, scales, strict=True) for arg in ("-a", f"{path}:{scale}")]
    code = main(["generate", "-m", str(tiny_sd), *pairs, "-p", "a [V] face", "-p", "a [V] face at night",
                 "--seed", "3", "--steps", "2", "--resolution", "16", "--device", "cpu", "--dtype", "fp32",
                 "-o", str(out), *flags])
    assert code == 0
    return json.loads((out / "prompts.json").read_text(encoding="utf-8"))


def test_two_runs_at_other_scales_record_their_adapters_and_settings(tiny_sd, two_adapters, tmp_path):
    first = _generate(tiny_sd, two_adapters, (0.7, 0.3), tmp_path / "a", "--guidance", "3.5", "--negative",
                      "blurry", "--scheduler", "euler", "--text-encoder-scale", "0", "--adapter-start", "0.25",
                      "--adapter-end", "0.75", "--cross-attention-scale", "0.5")
    second = _generate(tiny_sd, two_adapters, (0.2, 0.9), tmp_path / "b")
    assert first["settings"] == {
        "model": str(tiny_sd),
        "adapters": [{"file": str(two_adapters[0]), "scale": 0.7, "token": "zwx"},
                     {"file": str(two_adapters[1]), "scale": 0.3, "token": "qpv"}],
        "token": "zwx", "steps": 2, "guidance": 3.5, "scheduler": "euler", "negative_prompt": "blurry",
        "resolution": 16, "parts": {"text_encoder_scale": 0.0, "adapter_start": 0.25, "adapter_end": 0.75,
                                    "cross_attention_scale": 0.5}}
    assert [a["scale"] for a in second["settings"]["adapters"]] == [0.2, 0.9]
    assert second["settings"]["parts"] == {"text_encoder_scale": 1.0, "adapter_start": 0.0, "adapter_end": 1.0,
                                           "cross_attention_scale": 1.0}
    # Each image keeps its entry as before; eval fills [V] with the word the record says it became, and its CLIP-T
    # removes that word and the other adapter's.
    assert [(e["prompt"], e["seed"]) for e in first["images"]] == [("a [V] face", 3), ("a [V] face at night", 3)]
    evaluated = load_eval_set(tmp_path / "a")
    assert [s.prompt for s in evaluated.samples] == ["a zwx face", "a zwx face at night"]
    assert [s.clean_prompt() for s in evaluated.samples] == ["a face", "a face at night"]
    assert (evaluated.token, evaluated.other_tokens) == ("zwx", ("qpv",))
    assert not evaluated.skipped


def test_with_no_resolution_asked_the_record_names_the_size_drawn(tiny_sd, tmp_path, one_thread):
    code = main(["generate", "-m", str(tiny_sd), "-p", "a face", "--steps", "1", "--device", "cpu", "--dtype", "fp32",
                 "-o", str(tmp_path / "out")])
    assert code == 0
    record = json.loads((tmp_path / "out" / "prompts.json").read_text(encoding="utf-8"))
    with Image.open(tmp_path / "out" / record["images"][0]["image"]) as picture:
        assert record["settings"]["resolution"] == picture.width == picture.height


def test_the_grid_has_a_column_per_seed(tiny_sd, tmp_path, one_thread):
    code = main(["generate", "-m", str(tiny_sd), "-p", "a face", "--seed", "0", "--seed", "1", "--seed", "2", "--steps",
                 "1", "--resolution", "16", "--device", "cpu", "--dtype", "fp32", "-o", str(tmp_path / "out")])
    assert code == 0
    with Image.open(tmp_path / "out" / "grid.png") as grid:
        assert grid.width > 2 * grid.height  # one row of three pictures, not a column of them


@pytest.mark.parametrize(("prompts", "tokens", "flag", "expected"), [
    (["a [V] face"], [], None, ["no --adapter: [V] becomes 'sks'"]),
    (["a face"], [], None, []),  # no [V]: nothing is asked of a subject
    (["a [V] face"], ["zwx", "zwx", "qpv"], None, ["2 adapters learned the word 'zwx'"]),
    (["a [V] face"], ["zwx", "qpv"], None, []),
    (["a [V] face"], ["zwx", "zwx"], "zwx", []),  # --token: the user chose the word on purpose
    (["a [V] face"], ["", ""], None, []),  # files that record no token
])
def test_a_v_prompt_that_calls_no_one_or_several_subjects_is_warned_about(prompts, tokens, flag, expected):
    from lowdim_sd.generate import token_warnings

    got = token_warnings(prompts, tokens, flag)
    assert len(got) == len(expected) and all(line.startswith(start) for line, start in zip(got, expected, strict=True))


def test_the_same_adapter_twice_is_refused_not_blended_with_itself(tiny_sd, two_adapters, tmp_path, capsys):
    # the "2 adapters learned one word" warning would send the user to retrain one of what is one file
    code = main(["generate", "-m", str(tiny_sd), "-a", str(two_adapters[0]), "-a", str(two_adapters[0]), "-p",
                 "a [V] face", "-o", str(tmp_path / "twice")])
    said = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "given twice" in said and "learned the word" not in said
    assert not (tmp_path / "twice").exists()


@pytest.mark.parametrize(("adapters", "parts", "tag"), [
    ([], {}, ""),
    ([1.0], {"text_encoder_scale": 1.0, "adapter_start": 0.0, "adapter_end": 1.0, "cross_attention_scale": 1.0}, ""),
    ([0.5, 1.0], {}, "scale 0.5/1"),
    ([1.0], {"text_encoder_scale": 0.0, "adapter_start": 0.3, "adapter_end": 1.0, "cross_attention_scale": 1.0},
     "te=0@start=0.3"),
    ([0.8], {"text_encoder_scale": 1.0, "adapter_start": 0.0, "adapter_end": 0.8, "cross_attention_scale": 0.25},
     "scale 0.8, end=0.8@ca=0.25"),
])
def test_the_grid_caption_says_how_the_adapters_were_drawn(adapters, parts, tag):
    from lowdim_sd.drawing_record import drawn_tag

    settings = {"adapters": [{"file": "a.safetensors", "scale": s, "token": "sks"} for s in adapters], "parts": parts}
    assert drawn_tag(settings) == tag


def test_parts_flags_that_act_on_no_layer_of_the_adapters_are_warned_about(tiny_sd, two_adapters, tmp_path, capsys):
    # the fixture's adapters hold self-attention query layers only: no text encoder, no cross-attention
    _generate(tiny_sd, two_adapters, (1.0, 1.0), tmp_path / "p", "--text-encoder-scale", "0",
              "--cross-attention-scale", "0.5", "--adapter-start", "0.3")
    said = " ".join(capsys.readouterr().err.split())
    assert "--text-encoder-scale and --cross-attention-scale match no layer of the adapters" in said
    assert "--adapter-start" not in said.split("match no layer")[0]  # it acts on their UNet layers
