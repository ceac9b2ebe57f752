"""A `bench quality` settings.json whose ``version`` is a JSON number of more digits than Python turns into an int
(4,300): ``json.loads`` fails on it, but it is still a format version, newer than this lowdim's, and is refused as
version 2 is (tabulate with the lowdim that made them), whatever else the file holds, never as damage to restore or
delete. Such a number anywhere else, a negative one, or a version written as a string, is still damage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lowdim_cli.main import main
from lowdim_sd.bench.quality import QualityJob, settings

pytestmark = pytest.mark.usefixtures("one_thread")

PAST_INT_LIMIT = 5_000  # digits: int() of more than 4,300 raises ValueError, and json.loads with it
HUGE = "9" * PAST_INT_LIMIT
PLACE = "__number__"
BELOW = "__negative__"  # written as -HUGE


def folder(tmp_path: Path, **changed) -> Path:
    """A results folder as `bench quality` leaves it (no results yet), its settings changed by ``changed``; the
    strings PLACE and BELOW written as the bare JSON numbers HUGE and -HUGE (json.dumps cannot write them)."""
    out = tmp_path / "bench"
    out.mkdir()
    job = QualityJob(identities=None, out=out, metrics=["tinyfaces-identity"], prompts=["a [V] face"], sample_steps=2)
    path = out / "settings.json"
    text = json.dumps(settings(job) | changed)
    path.write_text(text.replace(json.dumps(PLACE), HUGE).replace(json.dumps(BELOW), f"-{HUGE}"))
    return out


def refusal(out: Path, capsys) -> str:
    assert main(["bench", "quality", "-o", str(out), "--no-run"]) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("Warning:")]
    assert len(err) == 1, [line[:300] for line in err]
    return err[0]


def newer_line(out: Path, version: str) -> str:
    return (f"Error: {out / 'settings.json'}: results of format version {version}, which this lowdim does not read "
            f"(it reads version 1); tabulate them with the lowdim that made them, or use another --out")


def test_version_2_is_refused_as_one_this_lowdim_does_not_read(tmp_path, capsys):
    out = folder(tmp_path, version=2)
    assert refusal(out, capsys) == newer_line(out, "2")


def test_a_version_past_the_int_limit_is_refused_as_a_newer_one(tmp_path, capsys):
    out = folder(tmp_path, version=PLACE)
    assert refusal(out, capsys) == newer_line(out, HUGE)


def test_a_newer_version_is_said_before_any_other_number_past_the_limit(tmp_path, capsys):
    out = folder(tmp_path, version=PLACE, seed=PLACE, future_key=[PLACE])  # a newer lowdim may write what this can't
    assert refusal(out, capsys) == newer_line(out, HUGE)


@pytest.mark.parametrize(("changed", "named"), [({"seed": PLACE}, "Exceeds the limit"),
                                                ({"version": BELOW}, "Exceeds the limit"),
                                                ({"version": "2", "seed": PLACE}, "Exceeds the limit")])
def test_another_number_past_the_limit_or_a_negative_version_is_damage(tmp_path, capsys, changed, named):
    out = folder(tmp_path, **changed)
    line = refusal(out, capsys)
    assert line.startswith(f"Error: {out / 'settings.json'}: damaged (") and named in line, line[:300]
    assert "format version" not in line
