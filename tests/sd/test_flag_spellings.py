"""One spelling per concept across sibling commands: the face crop's room is --crop-margin everywhere (eval's
old --margin still works, hidden), and every --layers has the short -l that `inspect` has."""

from __future__ import annotations

import pytest

import lowdim_sd.personalize
import lowdim_sd.precompute
import lowdim_sd.workflows
from lowdim_cli.main import main
from lowdim_sd.eval import job as eval_job


class Ran(Exception):
    """Raised in place of the run: the command line parsed, and here is what it asked for."""


@pytest.fixture
def scored(tmp_path, monkeypatch):
    def run_eval(job, *args, **kwargs):
        raise Ran(job)

    monkeypatch.setattr(eval_job, "run_eval", run_eval)
    (tmp_path / "gen").mkdir()
    return tmp_path / "gen"


def eval_cli(folder, *args: str) -> int:
    return main(["eval", str(folder), "--metrics", "tinyfaces-identity", "--no-progress", "--device", "cpu", *args])


@pytest.mark.parametrize("flag", ["--crop-margin", "--margin"])
def test_eval_takes_crop_margin_and_its_old_name(scored, flag):
    with pytest.raises(Ran) as ran:
        eval_cli(scored, "--crop", flag, "0.3")
    assert ran.value.args[0].margin == 0.3


@pytest.mark.parametrize(("args", "words"), [
    (["--crop-margin", "0.3"], "--crop-margin sets the room around the cropped face"),
    (["--crop", "--crop-margin", "-1"], "--crop-margin must be 0 or more"),
    (["--crop", "--crop-margin", "0.3", "--margin", "0.4"], "--margin is the old name of --crop-margin"),
])
def test_eval_names_the_crop_margin_flag_typed(scored, capsys, args, words):
    assert eval_cli(scored, *args) == 1
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and words in said[0], said


def test_eval_help_shows_crop_margin_only(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["eval", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--crop-margin" in text and "--margin " not in text


@pytest.fixture
def runs(monkeypatch):
    """Each command's job, kept instead of run."""
    def keep(job, *args, **kwargs):
        raise Ran(job)

    for module, name in ((lowdim_sd.personalize, "personalize"), (lowdim_sd.workflows, "run_train"),
                         (lowdim_sd.precompute, "precompute")):
        monkeypatch.setattr(module, name, keep)


@pytest.mark.parametrize("command", [
    ["personalize", "-m", "tinyfaces", "-i", "face.png"],
    ["train", "-m", "tinyfaces", "-i", "face.png"],
    ["precompute", "-m", "tinyfaces", "-i", "faces"],
])
def test_every_layers_option_takes_l(runs, tmp_path, command):
    with pytest.raises(Ran) as ran:
        main([*command, "-o", str(tmp_path / "out"), "-l", "unet"])
    assert ran.value.args[0].layers == "unet"
