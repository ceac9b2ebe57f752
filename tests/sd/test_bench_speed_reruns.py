"""`lowdim bench speed` reruns: a skipped row is measured again when asked, measurements are tied to the machine
that made them, a bad --photo is refused before any work, and the personalize total is judged against its goal.

The measurements are stand-ins (a fixed record) and the model is not built: these tests are about what the
command stores and refuses, which test_bench_speed.py's real quick run does not isolate."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
import torch

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.bench import speed
from lowdim_sd.bench.speed import SpeedJob, Task, run_speed, tasks
from lowdim_sd.bench.speed_report import build_report, markdown
from lowdim_sd.bench.speed_setup import SCALES, Settings
from lowdim_sd.bench.speed_timing import record, skipped
from lowdim_sd.markdown_cells import markdown_cell

QUICK, FULL = SCALES["quick"], SCALES["full"]
ALL_KEYS = [key for task in tasks(QUICK) for key in task.keys]
KEYS = ("load", "crop", "merge")


@pytest.fixture
def measured(monkeypatch):
    """No model is built, the suite is three tasks (load, crop, merge), and they return what ``results`` holds
    (a fixed time where it holds nothing); records which tasks ran."""
    ran: list[str] = []
    results = {"crop": skipped("face crop", "no face detector: pip install 'lowdim[faces]'")}
    monkeypatch.setattr(speed, "saved_model", lambda folder, scale: folder)

    def stand_in(key):
        def run(ctx):
            ran.append(key)
            return {key: results.get(key) or record(ctx.label(key), [0.5, 0.5])}
        return run

    monkeypatch.setattr(speed, "tasks", lambda scale: [Task(key, (key,), stand_in(key)) for key in KEYS])
    return SimpleNamespace(ran=ran, results=results)


def _job(out, *only: str, **options) -> SpeedJob:
    return SpeedJob(out=out, quick=True, device="cpu", only=only, **options)


# ------------------------------------------------------------------------------------------- N2: skipped rows


def test_a_skipped_row_is_measured_again_when_its_task_is_named(tmp_path, measured, one_thread):
    out = tmp_path / "speed"
    report = run_speed(_job(out, "load", "crop"), progress=False)
    assert report["measurements"]["crop"]["skipped"].startswith("no face detector")
    assert markdown_cell("skipped: no face detector: pip install 'lowdim[faces]'; a rerun with --only crop retries "
                         "it") in (out / "table.md").read_text()

    run_speed(_job(out, "load", "crop"), progress=False)  # still no detector: tried again, skipped again
    assert measured.ran == ["load", "crop", "crop"]

    del measured.results["crop"]  # the faces extra is installed now
    report = run_speed(_job(out, "crop"), progress=False)
    assert measured.ran[-1] == "crop" and report["measurements"]["crop"]["seconds"] == 0.5
    assert "skipped" not in (out / "table.md").read_text().split("face crop")[1].splitlines()[0]


def test_a_plain_rerun_keeps_a_skipped_row_rather_than_spend_its_time_again(tmp_path, measured, one_thread):
    # (after a timeout, speed_gpu.sh's rerun must not spend its minutes on a task that ran out of memory)
    out = tmp_path / "speed"
    run_speed(_job(out, "load", "crop"), progress=False)
    measured.ran.clear()
    run_speed(_job(out), progress=False)
    assert measured.ran == ["merge"]  # what is missing; the skipped crop is retried only when --only names it


def test_a_row_that_can_never_run_here_does_not_advise_a_rerun():
    entry = skipped("40 rank-relaxed steps, CUDA graphs", "CUDA graphs need a CUDA GPU", retry=False)
    report = build_report(Settings("quick", "cpu", "fp32", 16, 2), QUICK, {"finetune_graphs": entry}, {})
    assert "| skipped: CUDA graphs need a CUDA GPU |" in markdown(report, QUICK)


# ------------------------------------------------------------------------------------ N3: the measuring machine


def test_a_resume_on_another_machine_is_refused_in_one_line(tmp_path, measured, one_thread):
    out = tmp_path / "speed"
    run_speed(_job(out, "load"), progress=False)
    assert json.loads((out / "settings.json").read_text())["machine"]["threads"] == 1
    torch.set_num_threads(2)
    with pytest.raises(LowdimError, match=r"made on another machine \(threads 1 -> 2\).*--overwrite"):
        run_speed(_job(out, "merge"), progress=False)
    assert measured.ran == ["load"]
    table = run_speed(_job(out, run=False), progress=False)  # tabulating anywhere is fine: it measures nothing
    assert table["machine"]["threads"] == 1  # the machine that measured, not the one that tabulated


def test_each_measurement_keeps_the_command_that_made_it(tmp_path, measured, one_thread, monkeypatch):
    out = tmp_path / "speed"
    monkeypatch.setattr(sys, "argv", ["lowdim", "bench", "speed", "--only", "load"])
    run_speed(_job(out, "load"), progress=False)
    monkeypatch.setattr(sys, "argv", ["lowdim", "bench", "speed", "--only", "merge"])
    report = run_speed(_job(out, "merge"), progress=False)
    assert report["measurements"]["load"]["argv"][-1] == "load"
    assert report["measurements"]["merge"]["argv"][-1] == "merge"
    assert [(run["argv"][-1], run["measured"]) for run in report["runs"]] == [("load", ["load"]),
                                                                             ("merge", ["merge"])]


def test_settings_of_a_folder_measured_before_machines_were_recorded_still_resume(tmp_path, measured, one_thread):
    out = tmp_path / "speed"
    out.mkdir()
    (out / "settings.json").write_text(json.dumps(Settings("quick", "cpu", "fp32", 16, 2).to_dict()))
    run_speed(_job(out, "load"), progress=False)
    assert json.loads((out / "settings.json").read_text())["machine"]["threads"] == 1


# ---------------------------------------------------------------------------------------- N4: a bad --photo


def test_a_photo_that_is_not_an_image_is_one_line_before_anything_is_built(tmp_path, capsys):
    photo = tmp_path / "afile"
    photo.write_text("x")
    out = tmp_path / "speed"
    assert main(["bench", "speed", "--quick", "--device", "cpu", "--out", str(out), "--photo", str(photo)]) == 1
    error = capsys.readouterr().err
    assert f"--photo {photo}: not a readable image" in error and "Traceback" not in error
    assert not out.exists()


# ----------------------------------------------------------------------------- N5: the personalize total's goal


def _seconds(personalize: float) -> dict[str, dict]:
    seconds = dict.fromkeys(ALL_KEYS, 1.0) | {"hyper_k4": 0.5, "merge": 0.5, "finetune": personalize - 1.0}
    return {key: {"label": key, "seconds": value, "samples": [value]} for key, value in seconds.items()}


@pytest.mark.parametrize("settings, personalize, verdict", [
    (Settings("full", "cuda", "fp16", 512, 5), 4.0, "met"),
    (Settings("full", "cuda:0", "fp16", 512, 5), 12.8, "NOT met"),
    (Settings("full", "cuda", "fp32", 512, 5), 4.0, "not judged: an fp16 goal"),
    (Settings("full", "cpu", "fp32", 512, 5), 4.0, "not judged: a GPU goal"),
    (Settings("quick", "cpu", "fp32", 16, 2), 4.0, "not judged at the quick scale"),
])
def test_the_personalize_total_is_judged_against_five_seconds_on_a_gpu_in_fp16(settings, personalize, verdict):
    scale = SCALES[settings.scale]
    report = build_report(settings, scale, _seconds(personalize), {})
    total = report["derived"]["personalize"]
    assert total["seconds"] == pytest.approx(personalize) and total["goal"] == "≤ 5 s (GPU, fp16)"
    assert total["met"] is {"met": True, "NOT met": False}.get(verdict)
    row = next(line for line in markdown(report, scale).splitlines() if line.startswith("| = personalize:"))
    assert row.endswith(f"| ≤ 5 s (GPU, fp16): {verdict} |")


# ------------------------------------------------------------ --overwrite drops only rows of other settings


def test_overwrite_on_a_rerun_of_the_same_settings_keeps_and_resumes_the_stored_rows(tmp_path, measured, one_thread):
    # (the interrupt line says to run the same call again: with --overwrite in it, that must not start over)
    out = tmp_path / "speed"
    run_speed(_job(out, "load", overwrite=True), progress=False)
    load = (out / "measurements" / "load.json").read_text()
    report = run_speed(_job(out, overwrite=True), progress=False)
    assert measured.ran == ["load", "crop", "merge"]  # load was stored: not measured again
    assert (out / "measurements" / "load.json").read_text() == load
    assert sorted(report["measurements"]) == sorted(KEYS)


def test_overwrite_with_only_one_task_keeps_the_other_rows_of_the_same_settings(tmp_path, measured, one_thread):
    out = tmp_path / "speed"
    run_speed(_job(out), progress=False)
    (out / "measurements" / "merge.json").unlink()
    report = run_speed(_job(out, "merge", overwrite=True), progress=False)
    assert measured.ran == ["load", "crop", "merge", "merge"]
    assert sorted(report["measurements"]) == sorted(KEYS)
    assert "model load" in (out / "table.md").read_text()


def test_overwrite_drops_the_rows_of_other_settings(tmp_path, measured, one_thread):
    out = tmp_path / "speed"
    run_speed(_job(out, "load", "crop"), progress=False)
    report = run_speed(_job(out, "merge", resolution=24, overwrite=True), progress=False)
    assert sorted(report["measurements"]) == ["merge"] and not (out / "measurements" / "load.json").exists()
    assert json.loads((out / "settings.json").read_text())["resolution"] == 24
    assert "24 px" in (out / "table.md").read_text().splitlines()[0]


def test_overwrite_drops_the_rows_of_another_machine(tmp_path, measured, one_thread):
    out = tmp_path / "speed"
    run_speed(_job(out, "load"), progress=False)
    torch.set_num_threads(2)
    run_speed(_job(out, "load", overwrite=True), progress=False)
    assert measured.ran == ["load", "load"]
    assert json.loads((out / "settings.json").read_text())["machine"]["threads"] == 2


def test_overwrite_drops_rows_beside_a_damaged_settings_file(tmp_path, measured, one_thread):
    out = tmp_path / "speed"
    run_speed(_job(out, "load"), progress=False)
    (out / "settings.json").write_text("{not json")
    with pytest.raises(LowdimError, match="settings.json") as refused:
        run_speed(_job(out, "load"), progress=False)
    assert "--overwrite" in str(refused.value)  # the way out this test takes next is offered
    run_speed(_job(out, "load", overwrite=True), progress=False)
    assert measured.ran == ["load", "load"]


def test_the_overwrite_help_says_what_is_kept_and_how_to_measure_everything_again():
    import inspect
    import typing

    from lowdim_cli.bench_speed_command import speed as command

    option = typing.get_type_hints(command, include_extras=True)["overwrite"].__metadata__[0]
    text = " ".join(inspect.cleandoc(option.help).split())
    assert "other settings" in text and "another machine" in text
    assert "are kept" in text and "delete" in text
