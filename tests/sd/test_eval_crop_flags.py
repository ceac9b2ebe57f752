"""`lowdim eval`'s --margin and --crop-size shape the reference crop: without --crop they are refused, not
ignored, and with it a value no crop can use is one line, both before any metric loads."""

from __future__ import annotations

import pytest

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.eval import job


class Scored(Exception):
    """Raised in place of scoring: a refusal must come before it, and accepted flags get to it."""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    def run_eval(*args, **kwargs):
        raise Scored

    monkeypatch.setattr(job, "run_eval", run_eval)
    (tmp_path / "gen").mkdir()
    return tmp_path / "gen"


def eval_cli(capsys, folder, *args: str) -> tuple[int, str]:
    code = main(["eval", str(folder), "--metrics", "tinyfaces-identity", "--no-progress", "--device", "cpu", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("args", "named"), [
    (["--margin", "-2"], ["--margin", "--crop"]),
    (["--margin", "0.6"], ["--margin", "--crop"]),  # typed at its default: still not read
    (["--crop-size", "256"], ["--crop-size", "--crop"]),
    (["--no-crop", "--margin", "0.3"], ["--margin", "--crop"]),
    (["--crop", "--margin", "nan"], ["--margin must be", "nan"]),
    (["--crop", "--margin", "inf"], ["--margin must be", "inf"]),
    (["--crop", "--margin", "-0.5"], ["--margin must be", "-0.5"]),
    (["--crop", "--crop-size", "4"], ["--crop-size must be", "4"]),
    (["--crop", "--crop-size", "-512"], ["--crop-size must be", "-512"]),
    (["--crop", "--crop-size", "100000"], ["--crop-size must be 8 to 4096", "100000"]),
])
def test_a_crop_flag_nothing_reads_or_no_crop_can_use_is_one_line(folder, capsys, args, named):
    code, stderr = eval_cli(capsys, folder, *args)
    lines = stderr.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert all(text in lines[0] for text in named), lines[0]


@pytest.mark.parametrize("args", [
    [], ["--crop"], ["--crop", "--margin", "0"], ["--crop", "--margin", "0.25", "--crop-size", "8"],
    ["--crop", "--crop-size", "4096"],
])
def test_crop_flags_with_the_crop_still_score(folder, capsys, args):
    with pytest.raises(Scored):
        eval_cli(capsys, folder, *args)


@pytest.mark.parametrize(("options", "said"), [
    ({"margin": float("nan")}, r"EvalJob\(margin=\.\.\.\) must be 0 or more"),
    ({"margin": 4.0}, r"EvalJob\(margin=\.\.\.\) must be a finite number from 0 to 3"),  # as personalize
    ({"crop_size": 4}, r"EvalJob\(crop_size=\.\.\.\) must be 8 to 4096"),
    ({"crop_size": 4097}, r"EvalJob\(crop_size=\.\.\.\) must be 8 to 4096")])
def test_a_crop_no_crop_can_use_is_one_line_from_python_too(tmp_path, options, said):
    from lowdim_sd.eval.job import EvalJob, run_eval

    with pytest.raises(LowdimError, match=said):
        run_eval(EvalJob(folder=tmp_path, references=(), metrics=("tinyfaces-identity",), crop=True, **options))
