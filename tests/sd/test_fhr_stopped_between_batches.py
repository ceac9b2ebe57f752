"""``lowdim show`` of a one-process precompute stopped between two batches (its index written, no batch folder left,
as a stop before the next batch's first step leaves it) says it is unfinished, with the rerun, from the count of
identities the run was asked for that the index records; a finished run, --limit or not, stays a finished folder."""

from __future__ import annotations

import json

import pytest

import lowdim_sd.train as engine
from lowdim_sd.file_info import describe
from lowdim_sd.precompute import PrecomputeJob, precompute
from lowdim_sd.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 2


def job(tiny_sd, people, out, **kwargs) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=people, out=out,
                         **{"config": TrainConfig(steps=STEPS), "batch_subjects": 1, "crop": False, **kwargs})


@pytest.fixture
def stop_at(monkeypatch):
    """``stop_at(n)``: Ctrl-C's KeyboardInterrupt as the engine's nth step (from 1, over the run) begins."""
    real, count = engine._one_step, [0]

    def stopping(at: int) -> None:
        def step(*args, **kwargs):
            count[0] += 1
            if count[0] == at:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        count[0] = 0
        monkeypatch.setattr(engine, "_one_step", step)

    return stopping


def test_a_run_stopped_between_batches_is_shown_unfinished_with_its_rerun(tiny_sd, people, tmp_path, model, stop_at):
    out = tmp_path / "w"
    stop_at(STEPS + 1)  # the second batch's first step: nothing of it kept, so no batch folder stays
    with pytest.raises(KeyboardInterrupt):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert (out / "index.json").is_file() and not any(out.glob(".batch-in-flight*"))
    info = describe(out)
    assert info.type == "stopped_precompute"
    assert dict(info.rows)["unfinished"].startswith("a precompute stopped before its end: 1 identity kept (of the 3 "
                                                    "its run was asked for); rerun the same precompute command")
    assert info.use.startswith("lowdim precompute ") and "train-hypernet" not in info.use


def test_a_finished_run_and_a_finished_limited_run_are_weight_folders(tiny_sd, people, tmp_path, model):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out, limit=2), progress=False, model=model)
    assert describe(out).type == "weight_folder"  # 2 of the 3 under people, as asked
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert describe(out).type == "weight_folder"


def test_a_stop_before_a_rerun_s_first_batch_leaves_the_count_it_was_asked_for(tiny_sd, people, tmp_path, model,
                                                                               stop_at):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out, limit=1), progress=False, model=model)
    stop_at(1)  # the rerun without --limit stops as its first step begins: its index was not written since
    with pytest.raises(KeyboardInterrupt):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert "1 identity kept (of the 3 its run was asked for)" in dict(describe(out).rows)["unfinished"]


def test_a_multi_process_run_drops_the_count_an_earlier_one_process_run_left(tiny_sd, people, tmp_path, model):
    """Its merge would carry the count over, while identities it counted may be gone since."""
    from lowdim_sd.precompute_resume import ASKED, record_asked

    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert json.loads((out / "index.json").read_text())[ASKED] == 3
    record_asked({}, 2, out / "index-p0.json", out, 0, 2)
    assert ASKED not in json.loads((out / "index.json").read_text())
