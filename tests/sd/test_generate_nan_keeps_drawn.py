"""A `generate` stopped by a picture that comes out NaN keeps the pictures drawn before it, as a Ctrl-C or an out of
memory stop does (session 47's note): the error names the picture, then says where the earlier ones are."""

from __future__ import annotations

import json

import pytest

from lowdim_sd.finite_latents import NaNPicture
from lowdim_sd.generate import GenerateConfig, draw_to_folder
from lowdim_sd.loading import load_sd

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a photo of a face", "a pencil sketch of a face", "a face at night"]
STEPS = 2


def nan_from_picture(model, number: int):
    """A UNet hook that makes every picture from the ``number``-th on (1-based, one picture a call, one UNet call a
    step) come out NaN; returns the hook's handle."""
    calls = []

    def overflow(module, args, output):
        calls.append(None)
        if len(calls) > (number - 1) * STEPS:
            output[0].fill_(float("nan"))
        return output

    return model.pipe.unet.register_forward_hook(overflow)


def test_a_nan_picture_keeps_the_pictures_drawn_before_it(tiny_sd, tmp_path):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    nan_from_picture(model, 3)
    config = GenerateConfig(prompts=PROMPTS, seeds=[3, 7], steps=STEPS, resolution=16, batch=1)
    with pytest.raises(NaNPicture) as error:
        draw_to_folder(model, config, tmp_path / "out")
    said = str(error.value)
    assert said.startswith(f"the picture of '{PROMPTS[1]}' (seed 3) came out as NaN (not a number)"), said
    assert f"the 2 of 6 pictures drawn before it are in {tmp_path / 'out'} (grid.png, prompts.json)" in said, said
    listed = json.loads((tmp_path / "out" / "prompts.json").read_text())["images"]
    assert [(entry["prompt"], entry["seed"]) for entry in listed] == [(PROMPTS[0], 3), (PROMPTS[0], 7)]
    assert all((tmp_path / "out" / entry["image"]).is_file() for entry in listed)
    assert (tmp_path / "out" / "grid.png").is_file()


def test_a_nan_first_picture_writes_nothing_and_says_only_what_overflowed(tiny_sd, tmp_path):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    nan_from_picture(model, 1)
    config = GenerateConfig(prompts=PROMPTS, steps=STEPS, resolution=16, batch=1)
    with pytest.raises(NaNPicture, match=r"^the picture of 'a photo of a face' \(seed 0\) came out as NaN") as error:
        draw_to_folder(model, config, tmp_path / "out")
    assert "drawn before it" not in str(error.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_lowdim_generate_exits_1_naming_the_nan_picture_and_the_pictures_it_kept(tiny_sd, tmp_path, capsys,
                                                                               monkeypatch):
    import lowdim_sd.loading
    from lowdim_cli.main import main

    load = lowdim_sd.loading.load_sd

    def load_with_nan_at_the_second_picture(*args, **kwargs):
        model = load(*args, **kwargs)
        nan_from_picture(model, 2)
        return model

    monkeypatch.setattr(lowdim_sd.loading, "load_sd", load_with_nan_at_the_second_picture)
    code = main(["generate", "-m", str(tiny_sd), "-p", "a face", "-p", "a face at night", "--steps", str(STEPS),
                 "--batch", "1", "--resolution", "16", "--device", "cpu", "-o", str(tmp_path / "out")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "Traceback" not in err
    assert "the picture of 'a face at night' (seed 0) came out as NaN" in err
    assert "the 1 of 2 pictures drawn before it are in" in err
    assert len(list((tmp_path / "out").glob("000-*.png"))) == 1
