"""`lowdim bench quality` reads a results folder someone else made (sent for comparison, edited by hand, from another
lowdim) as data to check: a result or settings file with a value of the wrong type or range is one line naming the
file and what is wrong, exit 1, before any table is written, never a traceback or a table of impossible numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lowdim_cli.main import main
from lowdim_sd.bench.quality import QualityJob, settings

PROMPTS = ["a [V] face", "a pencil sketch of a [V] face"]
METRICS = ["tinyfaces-identity", "tinyfaces-style"]
RERUN = "delete it, and a rerun (without --no-run) redoes that task"


def result(method: str, identity: str, reference: str = "") -> dict:
    """A result as a run writes it: two prompts, the style metric with no question for the first one."""
    return {"method": method, "identity": identity, "reference": reference, "seconds": 1.5,
            "bytes": 0 if method == "base" else 1000, "device": "cpu", "looks": "", "hypernet": None,
            "hypernet_sha256": None, "scores": {"tinyfaces-identity": [0.25, 0.5], "tinyfaces-style": [None, 1.0]},
            "columns": {"tinyfaces-identity": "Identity", "tinyfaces-style": "Style acc"},
            "not_asked": {"tinyfaces-style": 1}, "skipped": {}}


def results_folder(tmp_path: Path, identities=("id-0", "id-1"), methods=("base", "only-hyper")) -> Path:
    out = tmp_path / "bench"
    out.mkdir(parents=True)
    job = QualityJob(identities=None, out=out, metrics=list(METRICS), prompts=list(PROMPTS), sample_steps=2)
    (out / "settings.json").write_text(json.dumps(settings(job)))
    for method in methods:
        for identity in identities:
            path = out / "results" / method / f"{identity}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result(method, identity)))
    return out


def tabulate(out: Path) -> int:
    return main(["bench", "quality", "-o", str(out), "--no-run"])


def one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("Warning:")]
    assert len(err) == 1, err
    return err[0]


def edit(path: Path, change) -> None:
    """``change(record)`` edits the record in place, or returns the file's new text."""
    record = json.loads(path.read_text())
    text = change(record)
    path.write_text(text if isinstance(text, str) else json.dumps(record))


def scores(values):
    return lambda r: r["scores"].update({"tinyfaces-identity": values})


DAMAGED_RESULTS = {
    "seconds as text": (lambda r: r.update(seconds="fast"), "seconds"),
    "seconds as a bool": (lambda r: r.update(seconds=True), "seconds"),
    "negative seconds": (lambda r: r.update(seconds=-3), "seconds"),
    "bytes as text": (lambda r: r.update(bytes="big"), "bytes"),
    "bytes as a fraction": (lambda r: r.update(bytes=1.5), "bytes"),
    "negative bytes": (lambda r: r.update(bytes=-5000000), "bytes"),
    "a score list as text": (scores("0.9"), "tinyfaces-identity"),
    "scores as text": (scores(["0.9", 0.5]), "tinyfaces-identity"),
    "scores as a dict": (scores({"a": 1}), "tinyfaces-identity"),
    "bools as scores": (scores([True, True]), "tinyfaces-identity"),
    "a NaN score": (scores([math.nan, 0.5]), "tinyfaces-identity"),
    "an infinite score": (scores([math.inf, 0.5]), "tinyfaces-identity"),
    "a score past a float": (lambda r: json.dumps(r).replace("0.25", "1e400"), "tinyfaces-identity"),
    "more scores than prompts": (scores([0.5] * 5), "tinyfaces-identity"),
    "fewer scores than prompts": (scores([0.5]), "tinyfaces-identity"),
    "scores not by metric": (lambda r: r.update(scores=[0.5, 0.5]), "scores"),
    "a metric name that is no name": (lambda r: r["scores"].update({"a | b": [0.5, 0.5]}), "a | b"),
    "columns as text": (lambda r: r.update(columns="Identity"), "columns"),
    "a heading that is no text": (lambda r: r["columns"].update({"tinyfaces-identity": 5}), "columns"),
    "a negative not_asked": (lambda r: r.update(not_asked={"tinyfaces-style": -7}), "not_asked"),
    "not_asked past the scores missing": (lambda r: r.update(not_asked={"tinyfaces-style": 2}), "not_asked"),
    "not_asked as a bool": (lambda r: r.update(not_asked={"tinyfaces-style": True}), "not_asked"),
    "another row's method": (lambda r: r.update(method="base"), "method"),
    "another file's identity": (lambda r: r.update(identity="../../../elsewhere"), "identity"),
    "a reference that is no path": (lambda r: r.update(reference=5), "reference"),
    "a hypernetwork that is no path": (lambda r: r.update(hypernet=5), "hypernet"),
    "skipped as text": (lambda r: r.update(skipped="all"), "skipped"),
}


@pytest.mark.parametrize(("change", "named"), DAMAGED_RESULTS.values(), ids=DAMAGED_RESULTS.keys())
def test_a_result_value_of_the_wrong_type_or_range_is_one_line_naming_it_and_writes_no_table(tmp_path, capsys,
                                                                                             change, named):
    out = results_folder(tmp_path)
    damaged = out / "results" / "only-hyper" / "id-0.json"
    edit(damaged, change)
    assert tabulate(out) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {damaged}: damaged result (") and line.endswith(RERUN), line
    assert named in line.split("damaged result", 1)[1], line
    assert not (out / "table.md").exists() and not (out / "table.json").exists()


def test_an_identity_that_is_no_plain_name_is_refused(tmp_path, capsys):
    out = results_folder(tmp_path, identities=("id-0",))
    name = "id\x1b[31m"
    (out / "results" / "base" / f"{name}.json").write_text(json.dumps(result("base", name)))
    assert tabulate(out) == 1
    line = one_line_error(capsys)
    assert "damaged result (identity" in line and "\x1b" not in line, line


def test_the_good_folder_tabulates_with_the_registered_headings(tmp_path, capsys):
    out = results_folder(tmp_path)
    assert tabulate(out) == 0, capsys.readouterr()
    header = "| Method | Identity | Style acc | s / subject | file (fp32) | n |"
    assert (out / "table.md").read_text().splitlines()[0] == header
    table = json.loads((out / "table.json").read_text())
    assert table["settings"]["version"] == 1
    assert table["rows"][1]["metrics"]["tinyfaces-identity"]["mean"] == pytest.approx(0.375)


DAMAGED_SETTINGS = {
    "prompts as a number": ("prompts", 5),
    "no prompts": ("prompts", []),
    "a prompt that is no text": ("prompts", ["a [V] face", 3]),
    "steps as text": ("sample_steps", "lots"),
    "no steps": ("sample_steps", 0),
    "steps as a bool": ("sample_steps", True),
    "metrics as text": ("metrics", "tinyfaces-identity"),
    "a metric twice": ("metrics", ["tinyfaces-identity", "tinyfaces-identity"]),
    "seed as text": ("seed", "0"),
    "an infinite guidance": ("guidance", math.inf),
    "token as a number": ("token", 5),
    "model as a number": ("model", 5),
    "dtype as a list": ("dtype", ["fp32"]),
    "no version": ("version", None),
}


@pytest.mark.parametrize(("key", "value"), DAMAGED_SETTINGS.values(), ids=DAMAGED_SETTINGS.keys())
def test_a_settings_value_of_the_wrong_type_is_one_line_naming_settings_json(tmp_path, capsys, key, value):
    out = results_folder(tmp_path)
    stored = json.loads((out / "settings.json").read_text())
    if value is None:
        del stored[key]
    else:
        stored[key] = value
    (out / "settings.json").write_text(json.dumps(stored))
    assert tabulate(out) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {out / 'settings.json'}: damaged ({key} "), line
    assert "--metrics" not in line and "another --out" in line, line
    assert not (out / "table.md").exists()


def test_a_metric_this_lowdim_does_not_register_is_named_with_the_settings_file(tmp_path, capsys):
    out = results_folder(tmp_path)
    stored = json.loads((out / "settings.json").read_text())
    (out / "settings.json").write_text(json.dumps(stored | {"metrics": [*METRICS, "evil-metric"]}))
    assert tabulate(out) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {out / 'settings.json'}: ") and "evil-metric" in line, line


def test_results_of_another_format_version_are_refused_by_name(tmp_path, capsys):
    out = results_folder(tmp_path)
    stored = json.loads((out / "settings.json").read_text())
    (out / "settings.json").write_text(json.dumps(stored | {"version": 99, "future_key": 1}))
    assert tabulate(out) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {out / 'settings.json'}: ") and "version 99" in line, line
    assert not (out / "table.json").exists()
