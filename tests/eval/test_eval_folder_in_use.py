"""eval on a folder another run is writing (review AN2: generate replaces its pictures one by one, then
prompts.json): refused in one line naming the run, not a score of two runs' pictures taken as one."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from lowdim.errors import LowdimError
from lowdim_sd import runs
from lowdim_sd.eval import job as eval_job
from lowdim_sd.eval.job import TINYFACES_METRICS, EvalJob, run_eval


@pytest.fixture
def folder(tmp_path, noise):
    (tmp_path / "images").mkdir()
    for seed in range(2):
        noise(seed, 32).save(tmp_path / "images" / f"{seed}.png")
    (tmp_path / "images" / "prompts.json").write_text(json.dumps(
        {"token": "sks", "images": {"0.png": "a [V] face", "1.png": "a [V] face"}}))
    return tmp_path / "images"


def hold(folder) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": "lowdim generate -o images",
              "started": time.time()}
    (folder / runs.LOCK).write_text(json.dumps(record))


def test_a_folder_a_live_run_holds_is_refused_naming_the_run(folder):
    hold(folder)
    with pytest.raises(LowdimError, match=rf"{folder}: another run is writing it \(pid {os.getpid()} on .*: lowdim "
                                          r"generate -o images\); score it once that run has ended \(if that run "
                                          rf"is gone, delete {folder / runs.LOCK}\)"):
        run_eval(EvalJob(folder=folder, metrics=TINYFACES_METRICS))


def test_a_run_that_starts_while_eval_reads_the_folder_is_refused_too(folder, monkeypatch):
    read = eval_job.load_eval_set

    def read_then_a_run_starts(*args, **kwargs):
        data = read(*args, **kwargs)
        hold(folder)
        return data

    monkeypatch.setattr(eval_job, "load_eval_set", read_then_a_run_starts)
    with pytest.raises(LowdimError, match="another run is writing it"):
        run_eval(EvalJob(folder=folder, metrics=TINYFACES_METRICS))


def test_a_dead_runs_lock_does_not_stop_eval(folder):
    (folder / runs.LOCK).write_text(json.dumps({"pid": 2**22 + 7, "host": socket.gethostname(), "command": "x"}))
    assert len(run_eval(EvalJob(folder=folder, metrics=TINYFACES_METRICS)).images) == 2


def test_a_bytes_reference_is_refused_as_a_whole(folder):
    with pytest.raises(LowdimError, match="references= takes a path .*got a bytes"):
        EvalJob(folder=folder, references=b"/x")
