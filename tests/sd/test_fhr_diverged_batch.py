"""A precompute batch that diverged keeps its last good state in its batch folder, and its record says it diverged:
a rerun with the same settings would resume it only to go non-finite at the same step again (training is
deterministic), so it refuses at once, naming the folder, the step and what helps; a lower learning rate discards
the kept state and trains the batch from step 0; ``lowdim show`` of the folder says it diverged."""

from __future__ import annotations

import re

import pytest

import lowdim_sd.train as engine
from lowdim_sd.file_info import describe
from lowdim_sd.precompute import PrecomputeJob, precompute
from lowdim_sd.train import TrainConfig, TrainingDiverged

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 4


def job(tiny_sd, people, out, **kwargs) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=people, out=out,
                         **{"config": TrainConfig(steps=STEPS), "batch_subjects": 2, "crop": False, **kwargs})


@pytest.fixture
def steps(monkeypatch):
    """The engine's steps, counted; the step ``at`` (from 0) of the batch ``names`` gives a NaN loss, every time it is
    run, as too high a rate does: ``steps.nan = (names, at)``."""
    real = engine._one_step

    class Steps:
        count, nan = 0, None

        def __call__(self, model, subjects, trainable, optimizer, config, at, *args, **kwargs):
            self.count += 1
            loss = real(model, subjects, trainable, optimizer, config, at, *args, **kwargs)
            return float("nan") if (list(trainable.subject_names), at) == self.nan else loss

    counted = Steps()
    monkeypatch.setattr(engine, "_one_step", counted)
    return counted


def test_a_rerun_of_a_diverged_first_batch_refuses_and_a_lower_rate_trains_it_anew(tiny_sd, people, tmp_path, model,
                                                                                   steps):
    out = tmp_path / "w"
    folder = out / ".batch-in-flight"
    steps.nan = (["person0", "person1"], 2)
    with pytest.raises(TrainingDiverged, match="^the loss became nan at step 3; training stopped and the last good "
                                               "state is saved in "):
        precompute(job(tiny_sd, people, out), progress=False, model=model)

    steps.count = 0
    with pytest.raises(TrainingDiverged) as refused:
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert str(refused.value) == (f"{folder}: its batch (person0, person1) diverged at step 3 (the loss became nan) "
                                  f"with these same settings, and resumed it would diverge there again: try a lower "
                                  f"--lr (removing {folder} discards it)")
    assert steps.count == 0 and (folder / "checkpoints" / "step-000002").is_dir()  # not a step wasted, nothing lost
    assert "diverged at step 3 (the loss became nan)" in dict(describe(folder).rows)["batch"]
    assert dict(describe(out).rows)["unfinished"].endswith("it resumes each batch from its checkpoint, but for one "
                                                           "that diverged (below)")

    steps.nan = None  # the lower rate trains the batch from step 0, discarding the kept state with its line
    with pytest.warns(UserWarning, match="^" + re.escape(f"{folder}: discarded the stopped batch (person0, person1, "
                                                         f"at step 2): it was trained otherwise: ")):
        result = precompute(job(tiny_sd, people, out, learning_rate=1e-3), progress=False, model=model)
    assert result.trained == ["person0", "person1", "person2"] and steps.count == 2 * STEPS and not folder.exists()


def test_a_rerun_of_a_diverged_later_batch_says_other_settings_need_another_out(tiny_sd, people, tmp_path, model,
                                                                                steps):
    out = tmp_path / "w"
    folder = out / ".batch-in-flight"
    steps.nan = (["person2"], 1)
    with pytest.raises(TrainingDiverged, match="at step 2;"):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    steps.count = 0
    with pytest.raises(TrainingDiverged, match="^" + re.escape(
            f"{folder}: its batch (person2) diverged at step 2 (the loss became nan) with these same settings, and "
            f"resumed it would diverge there again: try a lower --lr with another out ({out} keeps the settings its "
            f"identities were trained with) (removing {folder} discards it)") + "$"):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert steps.count == 0


def test_a_batch_stopped_by_ctrl_c_still_resumes(tiny_sd, people, tmp_path, model, monkeypatch):
    """Only a divergence is refused: a stop's kept steps resume as they always did."""
    out = tmp_path / "w"
    real, calls = engine._one_step, []

    def stopped_at_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_one_step", stopped_at_third)
    with pytest.raises(KeyboardInterrupt):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    monkeypatch.setattr(engine, "_one_step", real)
    assert precompute(job(tiny_sd, people, out), progress=False, model=model).trained == [
        "person0", "person1", "person2"]
