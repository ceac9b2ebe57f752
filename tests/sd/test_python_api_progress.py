"""Progress from Python (review R7): a script's stdout is its data, so lowdim's bars draw on stderr, as tqdm's do;
``generate`` silences the pipeline's own diffusers bar for the call and puts the user's setting back."""

from __future__ import annotations

import io
import sys

import pytest
from rich.console import Console

from lowdim_sd import runs
from lowdim_sd.generate import GenerateConfig, generate
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIG = GenerateConfig(prompts=["a face"], steps=2, resolution=16)


def test_run_train_with_its_defaults_writes_no_bar_to_stdout_nor_to_a_log(model, tiny_sd, face, tmp_path, capsys):
    run_train(TrainJob(model=str(tiny_sd), images=[face], out=tmp_path / "t", config=TrainConfig(steps=2)),
              model=model)
    assert capsys.readouterr() == ("", "")  # stderr a file here, not a terminal: no bar frame in it either
    assert runs.bar_console().file is sys.stderr


def test_the_bar_draws_on_a_terminals_stderr(monkeypatch):
    bars = Console(file=io.StringIO(), force_terminal=True, width=80)
    monkeypatch.setattr(runs, "bar_console", lambda: bars)
    with runs.progress(2, "training") as advance:
        advance(0.5)
    assert "training" in bars.file.getvalue()


def test_a_print_during_a_bar_stays_on_a_piped_stdout(monkeypatch, capsys):
    bars = Console(file=io.StringIO(), force_terminal=True, width=80)  # stderr a terminal, stdout piped
    monkeypatch.setattr(runs, "bar_console", lambda: bars)
    with runs.progress(2, "training") as advance:
        print('{"step": 1}')
        advance(0.5)
    assert capsys.readouterr().out == '{"step": 1}\n' and "training" in bars.file.getvalue()


@pytest.mark.parametrize("setting", [None, {"leave": False}, {"disable": False}])
def test_generate_silences_the_pipelines_own_bar_and_puts_the_users_setting_back(model, capsys, setting):
    pipe = model.pipe
    if setting is None:  # a pipeline as diffusers builds it: no setting at all, so its bar shows
        pipe.__dict__.pop("_progress_bar_config", None)
    else:
        pipe.set_progress_bar_config(**setting)
    for progress in (False, True):
        generate(model, CONFIG, progress=progress)
        assert "it/s" not in capsys.readouterr().err  # tqdm's `0%| | 0/2 [...it/s]`
        assert getattr(pipe, "_progress_bar_config", None) == setting
    pipe.set_progress_bar_config(disable=True)  # as load_sd left it, for the module's other tests
