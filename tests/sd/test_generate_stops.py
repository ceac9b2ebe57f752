"""A stopped `generate` (Ctrl-C, or out of memory at one picture a call) keeps the pictures it drew."""

from __future__ import annotations

import json

import pytest
import torch

from lowdim_sd.generate import GenerateConfig, draw_to_folder
from lowdim_sd.loading import load_sd
from lowdim_sd.runs import Interrupted

PROMPTS = ["a photo of a face", "a pencil sketch of a face", "a face at night"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, torch.OutOfMemoryError])
def test_a_stopped_run_keeps_the_pictures_drawn_before_the_stop(tiny_sd, tmp_path, stop):
    model = load_sd(str(tiny_sd))
    pipe, calls = model.pipe, []
    draw = type(pipe).__call__

    class StopsAtThirdCall(type(pipe)):
        def __call__(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise stop("CUDA out of memory" if stop is torch.OutOfMemoryError else "")
            return draw(self, *args, **kwargs)

    pipe.__class__ = StopsAtThirdCall
    config = GenerateConfig(prompts=PROMPTS, seeds=[3, 7], steps=2, resolution=16, batch=1)
    kept = "after 2 of 6 pictures; the pictures drawn are in"
    if stop is KeyboardInterrupt:  # the CLI prints an Interrupted's text and exits 130
        with pytest.raises(Interrupted, match=kept):
            draw_to_folder(model, config, tmp_path / "out")
    else:  # the CLI names the memory and the flags that lower it, after this warning
        with pytest.raises(torch.OutOfMemoryError), pytest.warns(UserWarning, match=kept):
            draw_to_folder(model, config, tmp_path / "out")
    listed = json.loads((tmp_path / "out" / "prompts.json").read_text())["images"]
    assert [(entry["prompt"], entry["seed"]) for entry in listed] == [(PROMPTS[0], 3), (PROMPTS[0], 7)]
    assert all((tmp_path / "out" / entry["image"]).is_file() for entry in listed)
    assert (tmp_path / "out" / "grid.png").is_file()


def test_a_run_stopped_before_its_first_picture_writes_nothing(tiny_sd, tmp_path):
    model = load_sd(str(tiny_sd))

    class Stops(type(model.pipe)):
        def __call__(self, *args, **kwargs):
            raise KeyboardInterrupt

    model.pipe.__class__ = Stops
    with pytest.raises(Interrupted, match="before the first picture; nothing was written"):
        draw_to_folder(model, GenerateConfig(prompts=PROMPTS, steps=2, resolution=16), tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ctrl_c_in_lowdim_generate_exits_130_naming_what_it_kept(tiny_sd, tmp_path, capsys, monkeypatch):
    import lowdim_sd.loading
    from lowdim_cli.main import main

    load, calls = lowdim_sd.loading.load_sd, []

    def load_then_stop_at_second_call(*args, **kwargs):
        model = load(*args, **kwargs)
        draw = type(model.pipe).__call__

        class StopsAtSecondCall(type(model.pipe)):
            def __call__(self, *call_args, **call_kwargs):
                calls.append(1)
                if len(calls) == 2:
                    raise KeyboardInterrupt
                return draw(self, *call_args, **call_kwargs)

        model.pipe.__class__ = StopsAtSecondCall
        return model

    monkeypatch.setattr(lowdim_sd.loading, "load_sd", load_then_stop_at_second_call)
    code = main(["generate", "-m", str(tiny_sd), "-p", "a face", "-p", "a [V] face", "--steps", "2",
                 "--batch", "1", "--device", "cpu", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 130
    assert "Interrupted after 1 of 2 pictures; the pictures drawn are in" in " ".join(err.split())
    assert "Traceback" not in err
    assert len(list((tmp_path / "out").glob("000-*.png"))) == 1


def test_an_earlier_runs_pictures_in_the_folder_are_pointed_out_not_listed(tiny_sd, tmp_path):
    model = load_sd(str(tiny_sd))
    out = tmp_path / "out"
    draw_to_folder(model, GenerateConfig(prompts=PROMPTS[:1], steps=2, resolution=16), out)
    with pytest.warns(UserWarning, match=r"also holds 1 picture of an earlier run .*prompts.json and grid.png "
                                         r"list this run's only"):
        draw_to_folder(model, GenerateConfig(prompts=PROMPTS[1:2], steps=2, resolution=16), out)
    listed = json.loads((out / "prompts.json").read_text())["images"]
    assert [entry["prompt"] for entry in listed] == [PROMPTS[1]]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        draw_to_folder(model, GenerateConfig(prompts=PROMPTS[1:2], steps=2, resolution=16), out / "again")
