"""The Python API in a long-lived process (a notebook, a web service): an in-process Ctrl-C right after a step's
update resumes exactly, loads from two threads work, one model serves one run at a time, and loading leaves the
host's logging as it was."""

from __future__ import annotations

import _thread
import logging
import threading
import time

import pytest
import safetensors.torch
import torch

from lowdim.errors import LowdimError
from lowdim_sd import loading, runs
from lowdim_sd.generate import GenerateConfig, attach_adapters, generate
from lowdim_sd.loading import load_sd
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

IN_USE = "in use by another run in this process"


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """One torch thread, as the other SD tests: tiny models run no faster on more."""


def job(tiny_sd, face, out, steps: int = 3, **kwargs) -> TrainJob:
    return TrainJob(model=str(tiny_sd), images=[face], out=out, space="lora",
                    config=TrainConfig(steps=steps, checkpoint_every=0), **kwargs)


def interrupting_at(done: int):
    """A listener that raises Ctrl-C in the main thread once ``done`` training steps are reported: right after that
    step's update, where a notebook's stop button or a progress hook's exception lands."""
    fired = []

    def heard(label: str, at: int, total: int) -> None:
        if label == "training" and at == done and not fired:
            fired.append(at)
            _thread.interrupt_main()
    return heard


def test_a_stop_right_after_an_update_checkpoints_that_step_and_resumes_bit_identical(tiny_sd, face, tmp_path):
    stopped_at_two = pytest.raises(runs.Interrupted, match="at step 2; checkpoint saved to .*step-000002")
    with stopped_at_two, runs.listen(interrupting_at(2)):
        run_train(job(tiny_sd, face, tmp_path / "stopped"), progress=False)
    resumed = run_train(job(tiny_sd, face, tmp_path / "stopped", resume=True), progress=False)
    assert (resumed.start_step, len(resumed.losses)) == (2, 1)  # the third step only, once
    run_train(job(tiny_sd, face, tmp_path / "whole"), progress=False)
    stopped, whole = (safetensors.torch.load_file(tmp_path / name / "adapter.safetensors") for name in ("stopped",
                                                                                                       "whole"))
    assert stopped.keys() == whole.keys()
    assert all(torch.equal(stopped[key], whole[key]) for key in whole)


def test_two_threads_load_one_at_a_time_and_both_get_their_model(tiny_sd, monkeypatch):
    real, inside, most = loading.load_pipeline, [], []

    def counted(*args, **kwargs):  # libraries' loading state is process-wide: two loads at once collide
        inside.append(1)
        most.append(len(inside))
        time.sleep(0.2)
        try:
            return real(*args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(loading, "load_pipeline", counted)
    models, errors = {}, {}

    def load(name: str) -> None:
        try:
            models[name] = load_sd(str(tiny_sd), "cpu")
        except BaseException as error:  # noqa: BLE001 (reported by the assertion below)
            errors[name] = error

    threads = [threading.Thread(target=load, args=(name,)) for name in "AB"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert max(most) == 1 and models["A"] is not models["B"]


def test_loading_leaves_the_hub_logger_as_the_host_set_it(tiny_sd):
    hub = logging.getLogger("huggingface_hub")
    before = hub.level
    hub.setLevel(logging.INFO)
    try:
        load_sd(str(tiny_sd), "cpu")
        assert hub.level == logging.INFO
    finally:
        hub.setLevel(before)


def busy(model, tiny_sd, face, out):
    """A run_train on ``model`` in another thread, held after its first step until the returned event is set."""
    started, release, errors = threading.Event(), threading.Event(), []

    def held(label: str, done: int, total: int) -> None:
        if label == "training" and done == 1:
            started.set()
            release.wait(30)

    def train() -> None:
        try:
            with runs.listen(held):
                run_train(job(tiny_sd, face, out, steps=2), progress=False, model=model)
        except BaseException as error:  # noqa: BLE001 (the test checks the run finished)
            errors.append(error)
            started.set()

    thread = threading.Thread(target=train)
    thread.start()
    assert started.wait(60) and not errors, errors
    return thread, release, errors


@pytest.mark.parametrize("second", ["run_train", "generate", "attach_adapters"])
def test_a_model_in_use_by_another_thread_s_run_is_refused_in_one_line(model, tiny_sd, face, tmp_path, second):
    thread, release, errors = busy(model, tiny_sd, face, tmp_path / "first")
    try:
        with pytest.raises(LowdimError, match=IN_USE) as refused:
            if second == "run_train":
                run_train(job(tiny_sd, face, tmp_path / "second"), progress=False, model=model)
            elif second == "generate":
                generate(model, GenerateConfig(prompts=["a face"], steps=1, resolution=16))
            else:
                attach_adapters(model, [(tmp_path / "any.safetensors", 1.0)])
        assert "\n" not in str(refused.value)
    finally:
        release.set()
        thread.join()
    assert not errors, errors
    assert (tmp_path / "first" / "adapter.safetensors").is_file()
    generate(model, GenerateConfig(prompts=["a face"], steps=1, resolution=16))  # free again once it ended


def test_a_job_naming_another_model_than_the_one_given_is_refused_in_one_line(model, face, tmp_path):
    with pytest.raises(LowdimError, match="names the model 'sd15'.*model= is") as refused:
        run_train(TrainJob(model="sd15", images=[face], out=tmp_path / "c8"), progress=False, model=model)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "c8" / "adapter.safetensors").exists()
