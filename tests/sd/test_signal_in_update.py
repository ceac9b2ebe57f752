"""A SIGTERM or Ctrl-C that lands inside an optimizer update, as the `lowdim` script handles it: the update
finishes, the loop stops at the next step's check with that step's checkpoint, and a resume continues exactly.
(A KeyboardInterrupt raised some other way inside the update keeps only older checkpoints: test_train.py.)
The script installs that Ctrl-C handler only where Ctrl-C is Python's: a background job goes on ignoring it."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import torch
from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim_sd import stopping
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")
@pytest.fixture(autouse=True)
def no_stop_left_behind():
    """A stop a failing test left unclaimed would stop the next test on this worker instead."""
    yield
    stopping.withdraw()


CONFIG = TrainConfig(steps=5, learning_rate=5e-2, augment=False, prompt="a [V] face", checkpoint_every=0)


def signalled_in_update(monkeypatch, at_call: int) -> None:
    """The optimizer's ``at_call``-th update is where the signal lands: its handler runs there, then the update."""
    real, calls = torch.optim.AdamW.step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            stopping.request(signal.SIGTERM)  # what the script's handler does
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)


def test_training_finishes_the_update_then_keeps_that_step_and_resumes_exactly(tiny_sd, faces, tmp_path,
                                                                               monkeypatch):
    def trained(**kwargs):
        model = load_sd(str(tiny_sd))
        trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
        return train(model, [Subject(faces, 0)], trainable, CONFIG, progress=False, **kwargs)

    whole = trained()
    signalled_in_update(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt, match="interrupted at step 3; checkpoint saved to .*step-000003"):
        trained(out_dir=tmp_path)
    monkeypatch.undo()
    rest = trained(out_dir=tmp_path, resume=True)
    assert rest.start_step == 3 and rest.losses == whole.losses[3:]


def test_hypernetwork_training_finishes_the_update_then_keeps_that_step(weight_folders, tmp_path, monkeypatch):
    weights = weight_folders(tmp_path / "data", "w", 4, seed=9)
    whole = train_hypernet(job(weights, tmp_path / "a", steps=4, checkpoint_every=0), progress=False)
    signalled_in_update(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt, match="at step 2; checkpoint saved to"):
        train_hypernet(job(weights, tmp_path / "b", steps=4, checkpoint_every=0), progress=False)
    monkeypatch.undo()
    rest = train_hypernet(job(weights, tmp_path / "b", steps=4, checkpoint_every=0, resume=True), progress=False)
    assert rest.start_step == 2 and rest.losses == whole.losses[2:]


def _script_handlers(sigint: str) -> str:
    """What the `lowdim` script's handlers make of SIGINT, started with SIGINT as ``sigint`` ('default' or 'ignored'),
    told in one word by a fresh interpreter: ignored, deferred (kept for the next check) or raised."""
    code = f"""
import os, signal
from lowdim_cli.errors import stop_on_signals
from lowdim_sd import stopping
signal.signal(signal.SIGINT, signal.SIG_IGN if {sigint == "ignored"} else signal.default_int_handler)
stop_on_signals()
try:
    with stopping.held():
        os.kill(os.getpid(), signal.SIGINT)  # its handler runs here, before the section ends
except KeyboardInterrupt:
    raise SystemExit(print("raised"))
try:
    stopping.check()
    print("ignored")
except KeyboardInterrupt:
    print("deferred")
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()


def test_the_script_defers_ctrl_c_in_an_update_and_a_background_job_keeps_ignoring_it():
    assert _script_handlers("default") == "deferred"  # a terminal's Ctrl-C: after the update, at the check
    assert _script_handlers("ignored") == "ignored"  # `lowdim train ... &` in a shell script: not its Ctrl-C


def test_personalize_takes_up_a_stop_from_the_finetunes_last_update_keeping_the_adapter(tiny_sd, face, tmp_path,
                                                                                         monkeypatch):
    from lowdim_sd.personalize import PersonalizeJob, personalize
    from lowdim_sd.runs import Interrupted

    signalled_in_update(monkeypatch, 3)  # the last of 3 steps: no next step's check to take it up
    job = PersonalizeJob(model=str(tiny_sd), image=face, out=tmp_path / "me", steps=3, crop=False,
                         preview=True, preview_steps=1)
    with pytest.raises(Interrupted, match="during the preview; the adapter is complete"):
        personalize(job, progress=False)
    assert lowdim.read_adapter(tmp_path / "me" / "adapter.safetensors").space.name == "stack"
    assert not (tmp_path / "me" / "preview.png").exists()


def test_after_an_error_inside_an_update_the_next_ctrl_c_stops_at_once():
    """An update that raised (a CUDA out-of-memory in ``scaler.step``) is no longer held: a Ctrl-C during the
    stop's checkpoint that follows is not deferred to a check that never comes."""
    with pytest.raises(ValueError), stopping.held():
        raise ValueError("an update failed")
    try:
        with pytest.raises(KeyboardInterrupt):
            stopping.request(signal.SIGINT)  # what the script's handler does
    finally:
        stopping._holding.depth = 0  # a mutant left it held: the next test on this worker starts unheld
