"""The end of a `lowdim train` run: a stop during the final save keeps every trained step (the save is finished
first, or the last step is checkpointed), an output path of the wrong kind is refused before any step, --steps
has one bound, and a divergence says what became non-finite with only the hints that apply."""

from __future__ import annotations

import re
import signal

import pytest
import torch

import lowdim
import lowdim_sd.train as engine
from lowdim.errors import LowdimError
from lowdim_sd import modes, stopping, workflows
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import AdapterTrainable, adapter_trainable, resolve_layers
from lowdim_sd.runs import Interrupted
from lowdim_sd.train import Subject, TrainConfig, TrainingDiverged, train
from lowdim_sd.workflows import TrainJob, run_train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def no_stop_left_behind():
    """A stop a failing test left unclaimed would stop the next test on this worker instead."""
    yield
    stopping.withdraw()


def job(tiny_sd, face, out, **kwargs) -> TrainJob:
    return TrainJob(model=str(tiny_sd), images=[face], out=out, config=TrainConfig(steps=2, augment=False), **kwargs)


# ------------------------------------------------------------------------------------- a stop in the save


def signal_inside(monkeypatch, owner, name: str) -> None:
    """``owner.name`` gets the script's SIGINT (its handler: ``stopping.request``) as it starts, then runs."""
    real = getattr(owner, name)

    def signalled(*args, **kwargs):
        stopping.request(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, signalled)


def test_ctrl_c_during_the_full_model_save_finishes_the_save_then_stops(tiny_sd, face, tmp_path, monkeypatch):
    signal_inside(monkeypatch, modes, "save_pipeline")
    with pytest.raises(KeyboardInterrupt) as caught:  # a bare one (the run thrown away) must fail, not end pytest
        run_train(job(tiny_sd, face, tmp_path / "run", full=True), progress=False)
    assert isinstance(caught.value, Interrupted)
    assert re.search(r"final save.*finished first: wrote .*model, all 2 steps", str(caught.value)), caught.value
    assert (tmp_path / "run" / "model" / "model_index.json").is_file()
    load_sd(str(tmp_path / "run" / "model"))  # whole: it loads


def test_ctrl_c_during_the_adapter_save_finishes_the_save_then_stops(tiny_sd, face, tmp_path, monkeypatch):
    signal_inside(monkeypatch, AdapterTrainable, "save")
    with pytest.raises(KeyboardInterrupt) as caught:
        run_train(job(tiny_sd, face, tmp_path / "run"), progress=False)
    assert isinstance(caught.value, Interrupted) and "finished first" in str(caught.value), caught.value
    assert lowdim.read_adapter(tmp_path / "run" / "adapter.safetensors").space.name == "lidb"


def test_a_keyboard_interrupt_landing_in_the_save_checkpoints_the_last_step(tiny_sd, faces, tmp_path,
                                                                            monkeypatch):
    """A Ctrl-C that is Python's own (a notebook's), which no handler defers: the last step is kept to resume."""
    def interrupted(self, out_dir):
        raise KeyboardInterrupt

    model = load_sd(str(tiny_sd))
    config = TrainConfig(steps=3, learning_rate=5e-2, augment=False)
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    monkeypatch.setattr(AdapterTrainable, "save", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        train(model, [Subject(faces, 0)], trainable, config, out_dir=tmp_path, progress=False)
    assert isinstance(caught.value, Interrupted)
    assert re.search(r"at step 3; checkpoint saved to .*step-000003; continue with the same call with resume=True",
                     str(caught.value))  # called from Python: the parameter, not the flag
    monkeypatch.undo()
    resumed = train(model, [Subject(faces, 0)], trainable, config, out_dir=tmp_path, resume=True, progress=False)
    assert resumed.start_step == 3 and resumed.losses == []
    assert (tmp_path / "adapter.safetensors").is_file()


# ---------------------------------------------------------------------------------- checked before a step


class ModelLoaded(Exception):
    """Raised in place of loading the model: a refusal must come before it."""


@pytest.fixture
def no_model(monkeypatch):
    def load(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr(workflows, "load_sd", load)


def test_an_adapter_path_that_is_a_folder_is_refused_before_the_model_loads(face, tmp_path, no_model):
    (tmp_path / "run" / "adapter.safetensors").mkdir(parents=True)
    with pytest.raises(LowdimError, match=r"adapter\.safetensors.*is a folder"):
        run_train(job("tinyfaces", face, tmp_path / "run", overwrite=True), progress=False)


def test_a_model_path_that_is_a_file_is_refused_before_the_model_loads(face, tmp_path, no_model):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model").write_text("not a folder")
    with pytest.raises(LowdimError, match=r"model.*is a file"):
        run_train(job("tinyfaces", face, tmp_path / "run", full=True, overwrite=True), progress=False)


def test_a_subjects_adapter_path_that_is_a_folder_is_refused(face, tmp_path, no_model):
    for person in ("ann", "bob"):
        (tmp_path / "people" / person).mkdir(parents=True)
        (tmp_path / "people" / person / "a.png").write_bytes(face.read_bytes())
    (tmp_path / "run" / "bob.safetensors").mkdir(parents=True)
    batch = TrainJob(model="tinyfaces", subjects=tmp_path / "people", out=tmp_path / "run", overwrite=True)
    with pytest.raises(LowdimError, match=r"bob\.safetensors.*is a folder"):
        run_train(batch, progress=False)


@pytest.mark.parametrize("steps", [0, -5])
def test_steps_has_one_bound(face, tmp_path, no_model, steps):
    with pytest.raises(LowdimError, match=rf"^TrainConfig\(steps=...\) must be >= 1, got {steps}$"):
        run_train(TrainJob(model="tinyfaces", images=[face], out=tmp_path / "run", config=TrainConfig(steps=steps)),
                  progress=False)


# ------------------------------------------------------------------------------------------- divergence


def poisoned_gradient(monkeypatch) -> None:
    """Step 2's loss stays finite while a gradient is infinite: what too large a rate does first."""
    real = engine._one_step

    def step(model, subjects, trainable, optimizer, config, at, *args, **kwargs):
        loss = real(model, subjects, trainable, optimizer, config, at, *args, **kwargs)
        if at == 1:
            trainable.parameters[0].grad.view(-1)[0] = float("inf")
        return loss

    monkeypatch.setattr(engine, "_one_step", step)


@pytest.mark.parametrize(("precision", "hint"), [("no", False), ("bf16", True)])
def test_divergence_names_the_gradient_and_only_hints_that_apply(tiny_sd, faces, tmp_path, monkeypatch,
                                                                 precision, hint):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    poisoned_gradient(monkeypatch)
    config = TrainConfig(steps=3, learning_rate=5e-2, augment=False, mixed_precision=precision)
    with pytest.raises(TrainingDiverged) as caught:
        train(model, [Subject(faces, 0)], trainable, config, out_dir=tmp_path, progress=False)
    message = str(caught.value)
    assert "gradient" in message and "step 2" in message and "loss became" not in message
    assert "--lr" in message and ("--mixed-precision no" in message) == hint


def test_a_non_finite_loss_is_named_as_the_loss(tiny_sd, faces, monkeypatch):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    real = engine.denoising_losses
    monkeypatch.setattr(engine, "denoising_losses", lambda m, s, c, step, *a, **k:
                        real(m, s, c, step, *a, **k) * (float("nan") if step == 1 else 1.0))
    with pytest.raises(TrainingDiverged, match=r"^the loss became nan at step 2") as caught:
        train(model, [Subject(faces, 0)], trainable, TrainConfig(steps=3, augment=False), progress=False)
    assert "--mixed-precision" not in str(caught.value)


def test_diverging_model_in_half_precision_hints_fp32(tiny_sd, faces, monkeypatch):
    model = load_sd(str(tiny_sd), "cpu", "bf16")
    assert model.dtype == torch.bfloat16
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    poisoned_gradient(monkeypatch)
    with pytest.raises(TrainingDiverged, match="--dtype fp32"):
        train(model, [Subject(faces, 0)], trainable, TrainConfig(steps=3, augment=False), progress=False)


@pytest.mark.parametrize("later_stage", [False, True])
def test_personalize_with_no_stage_after_the_save_takes_up_the_held_stop_too(tiny_sd, face, tmp_path, monkeypatch,
                                                                           later_stage):
    from lowdim_sd.personalize import PersonalizeJob, personalize

    signal_inside(monkeypatch, AdapterTrainable, "save")
    job = PersonalizeJob(model=str(tiny_sd), image=face, out=tmp_path / "me", steps=1, crop=False,
                         preview=later_stage, **({"preview_steps": 1} if later_stage else {}))
    with pytest.raises(Interrupted, match="the adapter is complete") as caught:  # was a plain success, exit 0
        personalize(job, progress=False)
    assert ("during the preview" if later_stage else "during the final save") in str(caught.value)
    assert (tmp_path / "me" / "adapter.safetensors").is_file()
