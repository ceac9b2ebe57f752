"""A Ctrl-C at the end of a train-hypernet run (its last checkpoint, its final save) keeps the trained steps and says
so as a stop in the loop does; a stop during a step's validation leaves a resumed run that validates that step, so
its metrics.jsonl is an unbroken run's (review DZ, findings 1-3)."""

from __future__ import annotations

import errno
import json

import pytest
import torch
from hypertrain_jobs import TINY_VIT, job, records  # tests/sd, on the path as pytest puts it
from safetensors.torch import load_file

import lowdim.hyper
import lowdim_sd.hypertrain as hypertrain
from lowdim_cli.main import main
from lowdim_sd import checkpoints, runs

pytestmark = pytest.mark.usefixtures("one_thread")


def _stop_writing(monkeypatch, where, times: int = 1, then: BaseException | None = None) -> list:
    """Ctrl-C inside the first ``times`` writes of a hypernetwork file at ``where`` (``then`` for the one after, if
    given): what a signal landing in the final save, or in a checkpoint's network file, does. Returns the writes
    there, stopped or not."""
    real, writes = lowdim.hyper.save_hypernet, []

    def stopping(path, *args, **kwargs):
        if where(path):
            writes.append(path)
            if len(writes) <= times:
                raise KeyboardInterrupt
            if then is not None and len(writes) == times + 1:
                raise then
        return real(path, *args, **kwargs)

    monkeypatch.setattr(lowdim.hyper, "save_hypernet", stopping)  # both writers import it at the call
    return writes


def _in_step(out, step: int):
    return lambda path: str(path).startswith(str(out / "checkpoints" / f"step-{step:06d}"))


def _cli(weights, out, *more: str) -> list[str]:
    return ["train-hypernet", "-w", str(weights), "-o", str(out), "--encoder-config", json.dumps(TINY_VIT),
            "--width", "16", "--heads", "2", "--iterations", "1", "--steps", "3", "--batch-size", "2",
            "--alpha", "0", "--val-identities", "1", *more]


def _said(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_a_stop_in_the_final_save_without_periodic_checkpoints_keeps_the_end_step(weights, tmp_path, capsys,
                                                                                  monkeypatch):
    unbroken = tmp_path / "unbroken"
    assert main(_cli(weights, unbroken, "--checkpoint-every", "0")) == 0
    out = tmp_path / "h"
    _stop_writing(monkeypatch, lambda path: path == out / "hypernet.safetensors")
    assert main(_cli(weights, out, "--checkpoint-every", "0")) == 130
    said = _said(capsys)
    assert (f"Interrupted at step 3; checkpoint saved to {out}/checkpoints/step-000003; continue with the same "
            "command plus --resume") in said, said
    assert "Nothing half-written" not in said and "Traceback" not in said
    monkeypatch.undo()
    assert main(_cli(weights, out, "--checkpoint-every", "0", "--resume")) == 0
    assert "0 steps in" in capsys.readouterr().out  # no step redone
    expected, got = load_file(str(unbroken / "hypernet.safetensors")), load_file(str(out / "hypernet.safetensors"))
    assert expected.keys() == got.keys() and all(torch.equal(expected[key], got[key]) for key in expected)
    assert checkpoints.latest(out) is None  # a finished run without periodic checkpoints keeps none


def test_a_stop_in_the_end_checkpoint_writes_it_whole_and_leaves_no_half_made_folder(weights, tmp_path, capsys,
                                                                                   monkeypatch):
    out = tmp_path / "h"
    writes = _stop_writing(monkeypatch, _in_step(out, 3))  # steps 3, periodic every 2: the end's own checkpoint
    assert main(_cli(weights, out, "--checkpoint-every", "2")) == 130
    said = _said(capsys)
    assert f"Interrupted at step 3; checkpoint saved to {out}/checkpoints/step-000003" in said, said
    assert "Nothing half-written" not in said and len(writes) == 2  # cut short, then written by the stop
    assert checkpoints.latest(out) == out / "checkpoints" / "step-000003"
    monkeypatch.undo()
    assert main(_cli(weights, out, "--checkpoint-every", "2", "--resume")) == 0
    assert "0 steps in" in capsys.readouterr().out


@pytest.mark.parametrize(("again", "said"), [
    (KeyboardInterrupt(), ["Interrupted at step 3, and again while its checkpoint was written, so it was not kept; "
                           "the same command plus --resume continues from the last periodic one, "
                           "{out}/checkpoints/step-000002"]),
    (OSError(errno.ENOSPC, "No space left on device"),
     ["Interrupted at step 3, but its checkpoint could not be written (", "No space left on device",
      "; the same command plus --resume continues from the last periodic one, {out}/checkpoints/step-000002"]),
], ids=["second-ctrl-c", "disk-full"])
def test_a_stop_in_the_end_checkpoint_that_cannot_be_written_names_the_periodic_one_that_stands(
        weights, tmp_path, capsys, monkeypatch, again, said):
    out = tmp_path / "h"
    _stop_writing(monkeypatch, _in_step(out, 3), then=again)
    assert main(_cli(weights, out, "--checkpoint-every", "2")) == 130
    text = _said(capsys)
    assert all(part.format(out=out) in text for part in said), text
    assert "Nothing half-written" not in text and "checkpoint saved" not in text
    assert not (out / "checkpoints" / "step-000003").exists()  # no half-made step folder left behind
    assert checkpoints.latest(out) == out / "checkpoints" / "step-000002"


def test_a_second_stop_in_the_final_save_without_any_checkpoint_says_nothing_was_kept(weights, tmp_path, capsys,
                                                                                    monkeypatch):
    out = tmp_path / "h"
    _stop_writing(monkeypatch, lambda path: path == out / "hypernet.safetensors" or _in_step(out, 3)(path), times=2)
    assert main(_cli(weights, out, "--checkpoint-every", "0")) == 130
    said = _said(capsys)
    assert "Interrupted at step 3, and again while its checkpoint was written: nothing was kept; rerun" in said, said
    assert "Nothing half-written" not in said and not (out / "checkpoints" / "step-000003").exists()


def test_a_stop_in_the_final_save_after_the_end_checkpoint_names_that_checkpoint(weights, tmp_path, capsys,
                                                                                monkeypatch):
    out = tmp_path / "h"
    end = out / "checkpoints" / "step-000003"
    real, writes = lowdim.hyper.save_hypernet, []

    def stop_in_the_final_save(path, *args, **kwargs):
        if path == out / "hypernet.safetensors":
            raise KeyboardInterrupt
        writes.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(lowdim.hyper, "save_hypernet", stop_in_the_final_save)
    assert main(_cli(weights, out, "--checkpoint-every", "2")) == 130
    said = _said(capsys)
    assert (f"Interrupted at step 3; checkpoint saved to {end}; continue with the same command plus --resume"
            in said), said
    assert [path for path in writes if _in_step(out, 3)(path)] == [end / "hypernet.safetensors"]  # kept, not redone


def _without_time(path) -> list[dict]:
    return [{key: value for key, value in record.items() if key != "time"}
            for record in map(json.loads, path.read_text().splitlines())]


@pytest.mark.parametrize("stopped_at", [2, 4], ids=["a-val-every-step", "the-last-step"])
def test_a_stop_during_a_steps_validation_is_validated_by_the_resumed_run(weights, tmp_path, monkeypatch,
                                                                         stopped_at):
    options = {"steps": 4, "val_every": 2, "checkpoint_every": 2}
    unbroken = hypertrain.train_hypernet(job(weights, tmp_path / "unbroken", **options), progress=False)
    real, calls = hypertrain.evaluate, []

    def stop_in_validation(net, diffusion, val_set, job_, numbers, cache, mean):
        calls.append(1)
        if len(calls) == 1 + stopped_at // 2:  # step 0's, then each --val-every step's
            raise KeyboardInterrupt
        return real(net, diffusion, val_set, job_, numbers, cache, mean)

    monkeypatch.setattr(hypertrain, "evaluate", stop_in_validation)
    with pytest.raises(runs.Interrupted, match=f"at step {stopped_at}; checkpoint saved"):
        hypertrain.train_hypernet(job(weights, tmp_path / "h", **options), progress=False)
    monkeypatch.undo()
    rest = hypertrain.train_hypernet(job(weights, tmp_path / "h", resume=True, **options), progress=False)
    assert rest.start_step == stopped_at
    assert [r["step"] for r in records(rest.metrics, "val")] == [0, 2, 4]
    assert _without_time(rest.metrics) == _without_time(unbroken.metrics)
    assert rest.validation is not None and rest.validation["step"] == 4
    assert {k: v for k, v in rest.validation.items() if k != "time"} == \
        {k: v for k, v in (unbroken.validation or {}).items() if k != "time"}


def test_a_resume_from_a_validated_step_does_not_validate_it_twice(weights, tmp_path):
    options = {"steps": 4, "val_every": 2, "checkpoint_every": 2}
    hypertrain.train_hypernet(job(weights, tmp_path / "h", **{**options, "steps": 2}), progress=False)
    rest = hypertrain.train_hypernet(job(weights, tmp_path / "h", resume=True, **options), progress=False)
    assert rest.start_step == 2 and [r["step"] for r in records(rest.metrics, "val")] == [0, 2, 4]
