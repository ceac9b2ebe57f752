"""Lines train-hypernet and precompute print above their progress bars are one line each in a log, however
narrow the console: piped output is 80 columns to rich, and a validation line is longer (grep by step, or
test_hypertrain's own pattern, must find it whole)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import rich

import lowdim_sd.hypertrain as hypertrain
from lowdim_sd.hypertrain_io import validation_line
from lowdim_sd.precompute import _say

NARROW = 40  # columns: every line below is longer


@pytest.fixture
def narrow_console(monkeypatch):
    monkeypatch.setattr(rich.get_console(), "_width", NARROW)


def test_a_validation_line_is_printed_whole(narrow_console, monkeypatch, capsys):
    scores = {"identities": ["a", "b"], "weight_loss": 65.15, "weight_loss_vs_mean": 104.0, "diffusion_loss": 0.03059}
    monkeypatch.setattr(hypertrain, "evaluate", lambda *args: scores)
    monkeypatch.setattr(hypertrain, "unwrap", lambda net: net)
    logged = []
    loop = SimpleNamespace(main=True, net=None, diffusion=None, val_set=None, job=None, numbers={},
                           caches={"val": None}, mean=None, step=0, say=True,
                           log=SimpleNamespace(write=logged.append),
                           accelerator=SimpleNamespace(wait_for_everyone=lambda: None))
    hypertrain._Loop.validate(loop)
    line = validation_line(0, scores)
    assert len(line) > NARROW and logged
    assert capsys.readouterr().out == line + "\n"


def test_a_precompute_batch_line_is_printed_whole(narrow_console, capsys):
    line = "batch 12 of 400: identities 89-96 of 3200, 8 done before, about 3 h 10 min left"
    _say(True, line)
    assert capsys.readouterr().out == line + "\n"


@pytest.mark.parametrize("line", ["the identities moved from /data/x[/]y to /data/me[v]: resumed there",
                                  r"removed 2 shards no identity of the index names: a\[bold].safetensors, [red]b"])
def test_a_precompute_line_shows_the_paths_it_names_as_written(line, capsys):
    _say(True, line)  # a folder's name is no markup: '[/]' would stop the run, '[v]' would vanish
    assert capsys.readouterr().out == line + "\n"
