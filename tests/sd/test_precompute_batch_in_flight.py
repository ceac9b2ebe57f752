"""A stopped precompute keeps the steps of its batch in flight (``lowdim_sd.precompute_batches``): a checkpoint in
OUT/.batch-in-flight, which a rerun whose first batch is that batch resumes, to the bytes of a run never stopped;
any other batch, or the batch trained otherwise, discards it with one line; nothing of it stays once kept."""

from __future__ import annotations

import re

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
import lowdim_sd.precompute as pre
import lowdim_sd.train as engine
from lowdim_sd.file_info import describe
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.precompute import PrecomputeJob, precompute, read_index
from lowdim_sd.runs import RERUN
from lowdim_sd.train import Subject, TrainConfig, train
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")  # each test makes both runs it compares under it
STEPS = 4


def job(tiny_sd, people, out, **kwargs) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=people, out=out,
                         **{"config": TrainConfig(steps=STEPS), "batch_subjects": 2, "crop": False, **kwargs})


@pytest.fixture
def steps(monkeypatch):
    """The optimizer steps the engine runs, counted; ``steps.stop_at = N`` raises Ctrl-C's KeyboardInterrupt as the
    Nth step (counted from 1 over the whole run) begins."""
    real = engine._one_step

    class Steps:
        count, stop_at = 0, None

        def __call__(self, *args, **kwargs):
            self.count += 1
            if self.count == self.stop_at:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

    counted = Steps()
    monkeypatch.setattr(engine, "_one_step", counted)
    return counted


@pytest.fixture
def said(monkeypatch):
    lines: list[str] = []
    monkeypatch.setattr(pre, "_say", lambda progress, line: lines.append(line))
    return lines


def shard_bytes(out) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(out.glob("shard-*"))}


def test_a_stop_mid_batch_keeps_its_steps_and_the_rerun_resumes_them_to_the_bytes_of_a_run_never_stopped(
        tiny_sd, people, tmp_path, model, steps, said):
    whole, out = tmp_path / "whole", tmp_path / "w"
    precompute(job(tiny_sd, people, whole), progress=False, model=model)
    assert steps.count == 2 * STEPS and not (whole / ".batch-in-flight").exists()  # a finished run leaves none

    steps.count, steps.stop_at = 0, 3  # the first batch (person0, person1) stopped as its third step begins
    with pytest.raises(KeyboardInterrupt) as stopped:
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    folder = out / ".batch-in-flight"
    assert str(stopped.value) == (f"interrupted during the first batch; kept 2 of {STEPS} steps of the batch in flight "
                                  f"(person0, person1) in {folder}; {RERUN} to continue from step 2")
    assert [path.name for path in (folder / "checkpoints").iterdir()] == ["step-000002"]
    assert not list(out.glob("shard-*")) and not (out / "index.json").exists()

    steps.count, steps.stop_at = 0, None
    result = precompute(job(tiny_sd, people, out), progress=True, model=model)
    assert steps.count == (STEPS - 2) + STEPS  # the first batch's last two steps, then the second batch whole
    assert f"resuming the stopped batch (person0, person1) at step 2 of {STEPS} from {folder}" in said
    assert result.trained == ["person0", "person1", "person2"]
    assert shard_bytes(out) == shard_bytes(whole) and len(shard_bytes(out)) == 2
    assert read_index(out)["identities"] == read_index(whole)["identities"]
    assert [path.name for path in out.iterdir() if path.name.startswith(".batch")] == []


def test_a_stop_in_a_later_batch_is_said_and_leaves_a_folder_readers_ignore_until_a_changed_picture_discards_it(
        tiny_sd, people, tmp_path, model, steps):
    out = tmp_path / "w"
    steps.stop_at = STEPS + 2  # the second batch (person2) stopped after its first step
    with pytest.raises(KeyboardInterrupt) as stopped:
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    folder = out / ".batch-in-flight"
    assert str(stopped.value) == (f"interrupted with 2 identities trained in this run; 2 are kept in "
                                  f"{out / 'index.json'}, and 1 of {STEPS} steps of the batch in flight (person2) in "
                                  f"{folder}; {RERUN} to continue: done identities are skipped, and "
                                  f"the batch resumes at step 1")
    assert len(WeightDataset(out)) == 2 and "damaged" not in dict(describe(out).rows)  # train-hypernet, show
    save_images(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1,
                people / "person2", "img")  # another face under the same name
    steps.count, steps.stop_at = 0, None
    said = re.escape(f"{folder}: discarded the stopped batch (person2, at step 1): it was trained otherwise: the "
                     f"reference images differ (")
    with pytest.warns(UserWarning, match=f"^{said}.*\\); training the batch from step 0$"):
        assert precompute(job(tiny_sd, people, out), progress=False, model=model).trained == ["person2"]
    assert steps.count == STEPS and not folder.exists()


def test_another_batch_subjects_discards_the_stopped_batch_with_its_line_and_trains_from_step_0(
        tiny_sd, people, tmp_path, model, steps):
    out = tmp_path / "w"
    steps.stop_at = 2
    with pytest.raises(KeyboardInterrupt):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    steps.count, steps.stop_at = 0, None
    with pytest.warns(UserWarning, match="^" + re.escape(
            f"{out / '.batch-in-flight'}: discarded the stopped batch (person0, person1, at step 1): this run's first "
            f"batch is person0, person1, person2 (another PrecomputeJob(batch_subjects=...), or other identities to "
            f"train); training the batch from step 0") + "$"):
        precompute(job(tiny_sd, people, out, batch_subjects=3), progress=False, model=model)
    assert steps.count == STEPS and not (out / ".batch-in-flight").exists()


def test_a_shared_noise_switched_since_the_stop_discards_the_batch_naming_it(tiny_sd, people, tmp_path, model,
                                                                              steps):
    out = tmp_path / "w"
    steps.stop_at = 2
    with pytest.raises(KeyboardInterrupt):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    steps.count, steps.stop_at = 0, None
    with pytest.warns(UserWarning, match=r"discarded the stopped batch \(person0, person1, at step 1\): it was trained "
                                         r"otherwise: .*shared_noise"):
        precompute(job(tiny_sd, people, out, shared_noise=True), progress=False, model=model)
    assert steps.count == 2 * STEPS


def test_train_refuses_to_resume_a_checkpoint_whose_subjects_drew_other_seeds(model, faces, tmp_path):
    names = ["a", "b"]

    def run(seeds: list[int], resume: bool) -> None:
        trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None), subject_names=names)
        try:
            train(model, [Subject(faces, seed) for seed in seeds], trainable, TrainConfig(steps=1), out_dir=tmp_path,
                  resume=resume, progress=False)
        finally:
            lowdim.Adapters(model.modules).delete(trainable.name)

    run([5, 6], resume=False)
    with pytest.raises(lowdim.LowdimError, match=r"the noise seed of subject 'b' \(6 there, 7 now\)"):
        run([5, 7], resume=True)
