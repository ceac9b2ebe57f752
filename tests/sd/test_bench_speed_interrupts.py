"""`lowdim bench speed` after Ctrl-C: what is stored stays, OUT/speed.json and table.md show exactly that (never
the previous run's table, of other settings or not), and the rerun the interrupt line advises resumes.

The measurements are stand-ins (a fixed record) and the model is not built, as in test_bench_speed_reruns.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from lowdim_sd import runs
from lowdim_sd.bench import speed
from lowdim_sd.bench.speed import SpeedJob, Task, run_speed
from lowdim_sd.bench.speed_timing import record

KEYS = ("load", "crop", "merge")


@pytest.fixture
def measured(monkeypatch):
    """Three stand-in tasks (load, crop, merge), no model built; the task named in ``stop_at`` raises
    KeyboardInterrupt as Ctrl-C would. Records which tasks ran to the end."""
    state = SimpleNamespace(ran=[], stop_at=None)
    monkeypatch.setattr(speed, "saved_model", lambda folder, scale: folder)

    def stand_in(key):
        def run(ctx):
            if key == state.stop_at:
                raise KeyboardInterrupt
            state.ran.append(key)
            return {key: record(ctx.label(key), [0.5, 0.5])}
        return run

    monkeypatch.setattr(speed, "tasks", lambda scale: [Task(key, (key,), stand_in(key)) for key in KEYS])
    return state


def _job(out, **options) -> SpeedJob:
    return SpeedJob(out=out, quick=True, device="cpu", **options)


def _interrupted(job: SpeedJob) -> str:
    with pytest.raises(runs.Interrupted) as stop:
        run_speed(job, progress=False)
    return str(stop.value)


def _report(out) -> tuple[dict, str]:
    return json.loads((out / "speed.json").read_text()), (out / "table.md").read_text()


def test_after_an_interrupt_the_table_shows_what_is_stored_under_the_new_settings(tmp_path, measured, one_thread):
    out = tmp_path / "speed"
    run_speed(_job(out), progress=False)  # a whole table at 16 px
    measured.stop_at = "crop"
    assert "1 measurements are kept" in _interrupted(_job(out, resolution=24, overwrite=True))
    report, table = _report(out)
    assert report["settings"]["resolution"] == 24 and sorted(report["measurements"]) == ["load"]
    assert "24 px" in table.splitlines()[0] and "model load" in table


def test_after_an_interrupt_on_a_resume_the_table_holds_the_rows_measured_before_it(tmp_path, measured, one_thread):
    out = tmp_path / "speed"
    run_speed(_job(out, only=("load",)), progress=False)
    measured.stop_at = "merge"
    _interrupted(_job(out))
    report, _ = _report(out)
    assert sorted(report["measurements"]) == ["crop", "load"]  # crop was measured by the interrupted run


def test_an_interrupt_before_any_row_of_the_new_settings_leaves_no_table_of_the_old(tmp_path, measured, one_thread):
    out = tmp_path / "speed"
    run_speed(_job(out), progress=False)
    measured.stop_at = "load"
    assert "0 measurements are kept" in _interrupted(_job(out, resolution=24, overwrite=True))
    assert not (out / "speed.json").exists() and not (out / "table.md").exists()


def test_the_same_call_after_an_interrupt_measures_only_the_rest_even_with_overwrite(tmp_path, measured,
                                                                                    one_thread):
    out = tmp_path / "speed"
    job = _job(out, overwrite=True)
    measured.stop_at = "crop"
    assert str(runs.RERUN) in _interrupted(job)  # "run the same call again": so it must resume
    measured.stop_at = None
    report = run_speed(job, progress=False)
    assert measured.ran == ["load", "crop", "merge"]  # load once: kept, not measured again
    assert sorted(report["measurements"]) == sorted(KEYS)
