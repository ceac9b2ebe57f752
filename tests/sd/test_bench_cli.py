"""`lowdim bench quality` as a command: Ctrl-C says what it kept, and a bad --out, a damaged settings.json or
result file and a repeated metric are one line each."""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import pytest

from lowdim_cli.errors import INTERRUPTED
from lowdim_cli.main import main


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def bench(tiny_sd, identities, out, *flags) -> int:
    return main(["bench", "quality", "-i", str(identities), "-m", str(tiny_sd), "-o", str(out), "--metrics",
                 "tinyfaces-style", "--prompt", "a [V] face", "--sample-steps", "2", "--gallery-prompts", "",
                 *flags])


def test_ctrl_c_in_a_training_row_keeps_the_finished_results_and_says_rerun(tiny_sd, identities, tmp_path,
                                                                            capsys, monkeypatch, quick_methods):
    from lowdim_sd import checkpoints, train

    out = tmp_path / "bench"
    assert bench(tiny_sd, identities, out, "--methods", "base") == 0
    real_step = train._one_step

    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "_one_step", pressed)
    # A checkpoint would go with the task's work folder: writing one (a whole model for DreamBooth) is waste.
    monkeypatch.setattr(checkpoints, "save", lambda *args, **kwargs: pytest.fail("saved a checkpoint"))
    capsys.readouterr()
    assert bench(tiny_sd, identities, out, "--methods", "base,ti") == INTERRUPTED
    line = one_line_error(capsys)
    assert line == (f"Interrupted; 2 of 4 (method, identity) results are kept in {out / 'results'}; rerun the "
                    f"same command to continue")
    assert not list(out.glob("bench-*")) and not list((out / "results").rglob("*.claim"))
    monkeypatch.setattr(train, "_one_step", real_step)
    assert bench(tiny_sd, identities, out, "--methods", "base,ti") == 0
    assert sorted(p.stem for p in (out / "results" / "ti").glob("*.json")) == ["id-0", "id-1"]


def test_ctrl_c_in_a_batched_row_says_the_same(tiny_sd, identities, tmp_path, capsys, monkeypatch, quick_methods):
    from lowdim_sd import train

    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "_one_step", pressed)
    out = tmp_path / "bench"
    assert bench(tiny_sd, identities, out, "--methods", "lidb-db", "--batch-subjects", "2") == INTERRUPTED
    assert one_line_error(capsys) == (f"Interrupted; 0 of 2 (method, identity) results are kept in "
                                      f"{out / 'results'}; rerun the same command to continue")
    assert not list(out.glob("batch-*"))


def dangling(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere" / "deeper")
    return link


def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(("where", "says"), [
    (a_file, "a file, where a folder is needed"), (dangling, "which does not exist"),
    (lambda tmp_path: tmp_path / "a-file" / "below", "a file, where a folder is needed"),
    pytest.param(lambda tmp_path: "/proc/x", "not writable", marks=pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="/proc is Linux's"))])
def test_an_out_that_cannot_be_a_folder_is_one_line(tiny_sd, identities, tmp_path, capsys, where, says):
    (tmp_path / "a-file").write_text("not a folder")
    out = where(tmp_path)
    for run in ("--run", "--no-run"):
        assert bench(tiny_sd, identities, out, "--methods", "base", run) == 1
        line = one_line_error(capsys)
        assert str(out) in line and (says in line or run == "--no-run" and "no results to tabulate" in line), line


def store_result(out, identity, text=None):
    path = out / "results" / "base" / f"{identity}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else json.dumps({
        "method": "base", "identity": identity, "reference": f"gone/{identity}.png", "seconds": 1.0, "bytes": 0,
        "hypernet": None, "scores": {"m": [0.5]}, "columns": {"m": "M"}, "skipped": {}}))
    return path


@pytest.mark.parametrize("run", ["--run", "--no-run"])
def test_a_damaged_settings_file_is_one_line_naming_it(tiny_sd, identities, tmp_path, capsys, run):
    out = tmp_path / "bench"
    store_result(out, "id-0")
    (out / "settings.json").write_text("{")
    assert bench(tiny_sd, identities, out, "--methods", "base", run) == 1
    line = one_line_error(capsys)
    assert f"{out / 'settings.json'}: damaged" in line and "another --out" in line, line


@pytest.mark.parametrize("run", ["--run", "--no-run"])
@pytest.mark.parametrize("text", ['{"method": "ba', "[]", '{"method": "base"}', json.dumps(
    {"method": "base", "identity": "id-1", "reference": "", "seconds": 1, "bytes": 0, "scores": [0.5]})],
    ids=["cut", "list", "keys", "scores"])
def test_a_damaged_result_is_one_line_naming_it_before_any_work(tiny_sd, identities, tmp_path, capsys, run, text,
                                                                monkeypatch):
    from lowdim_sd.bench import quality

    out = tmp_path / "bench"
    damaged = store_result(out, "id-1", text)
    monkeypatch.setattr(quality, "run_task", lambda job, task: pytest.fail("ran a task before naming the damage"))
    assert bench(tiny_sd, identities, out, "--methods", "base", run) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {damaged}: damaged result"), line
    assert line.endswith("delete it, and a rerun (without --no-run) redoes that task"), line


def test_a_repeated_metric_is_refused_and_the_order_of_metrics_is_no_other_setting(tiny_sd, identities, tmp_path,
                                                                                    capsys):
    from lowdim_sd.bench.quality import QualityJob, prepare

    out = tmp_path / "bench"
    assert bench(tiny_sd, identities, out, "--methods", "base", "--metrics", "tinyfaces-style, tinyfaces-style") == 1
    assert "--metrics names 'tinyfaces-style' twice" in one_line_error(capsys) and not out.exists()
    metrics = ["tinyfaces-style", "tinyfaces-image"]
    job = QualityJob(identities=identities, model=str(tiny_sd), out=out, methods=["base"], metrics=metrics)
    prepare(job)
    prepare(dataclasses.replace(job, metrics=metrics[::-1]))  # the same metrics: no "other settings"
    with pytest.raises(Exception, match=r"other settings \(metrics\)"):
        prepare(dataclasses.replace(job, metrics=metrics[:1]))


def test_the_terminal_table_explains_a_column_of_pictures_asked_nothing(tiny_sd, identities, tmp_path, capsys):
    out = tmp_path / "bench"
    assert bench(tiny_sd, identities, out, "--methods", "base", "--limit", "1") == 0
    stored = json.loads((out / "results" / "base" / "id-0.json").read_text())
    assert stored["not_asked"] == {"tinyfaces-style": 1}  # "a [V] face" names no style
    shown = " ".join(capsys.readouterr().out.split())
    assert "Style acc asked nothing of 1 of 1 pictures: their prompts give it no question" in shown
    table = (out / "table.md").read_text()
    assert "| Base model | – | 0.00 (n=1) | 0 | 1 |" in table and "Style acc asked nothing of 1 of 1" in table


def printed_cells(text: str) -> list[list[str]]:
    """The cells of each line of a printed rich table (heading line, then a line per row), stripped."""
    return [[cell.strip() for cell in re.split("[│┃]", line)[1:-1]] for line in text.splitlines()
            if re.search("[│┃]", line)]


def test_the_terminal_table_prints_every_value_under_its_heading(capsys, monkeypatch):
    from lowdim_cli import console
    from lowdim_cli.bench_command import show
    from lowdim_sd.bench.report import aggregate, table_rows

    def record(identity, identity_score, style, seconds):
        return {"method": "base", "identity": identity, "reference": "", "seconds": seconds, "bytes": 54_000,
                "hypernet": None, "scores": {"i": [identity_score], "m": [style]},
                "columns": {"i": "Ident", "m": "Style acc"}, "skipped": {}}

    rows, columns = aggregate([record("id-0", 0.2, 1.0, 1.0), record("id-1", 0.4, 0.5, 3.0)], ["base", "ti"])
    monkeypatch.setattr(console.out, "_width", 200)  # every row on one line
    show(rows, columns)
    printed = printed_cells(capsys.readouterr().out)
    header, body = table_rows(rows, columns)
    assert printed == [header, *body]
    assert dict(zip(printed[0], printed[1], strict=True)) == {
        "Method": "Base model", "Ident": "0.300 ± 0.100", "Style acc": "0.750 ± 0.250", "s / subject": "2.00 ± 1.00",
        "file (fp32)": "54.0 KB", "n": "2"}
    assert printed[2][1:] == ["–", "–", "–", "–", "0"]  # the row without results: a cell under every heading


def test_the_work_folder_a_killed_worker_left_is_cleared_by_its_tasks_rerun(tiny_sd, identities, tmp_path,
                                                                           quick_methods):
    from lowdim_sd.bench.quality import QualityJob, run_quality

    out = tmp_path / "bench"
    left = out / "bench-lidb-db-id-0" / "checkpoints" / "step-000001"  # as a worker terminated mid-task leaves it
    left.mkdir(parents=True)
    (left / "state.pt").write_bytes(b"x" * 100)
    job = QualityJob(identities=identities, model=str(tiny_sd), out=out, methods=["lidb-db"], metrics=[],
                     prompts=["a [V] face"], sample_steps=2)
    assert len(run_quality(job)) == 2
    assert not list(out.glob("bench-*"))
