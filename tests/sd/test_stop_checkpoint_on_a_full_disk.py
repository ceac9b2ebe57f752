"""A Ctrl-C whose own checkpoint the disk refuses: `lowdim train` says so, why, and what --resume continues from."""

from __future__ import annotations

import errno
import sys

import pytest
from cli_train_runs import interrupt_at, reference_pictures, run  # noqa: F401  (a fixture: refs)

from lowdim.errors import LowdimError
from lowdim_sd import checkpoints, runs, train


def test_a_stops_checkpoint_refused_by_a_full_disk_names_the_reason_and_the_checkpoint_that_stands(
        tiny_sd, refs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    interrupt_at(monkeypatch, 3)
    real = checkpoints.save

    def full_while_stopping(out_dir, step, *args, **kwargs):
        if isinstance(sys.exception(), KeyboardInterrupt):  # the stop's own save: the disk is full by then
            raise OSError(errno.ENOSPC, "No space left on device", str(checkpoints.step_folder(out_dir, step)))
        return real(out_dir, step, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "save", full_while_stopping)
    code, said = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--steps", 4, "--checkpoint-every", 2,
                     "--out", out)
    assert code == 130 and "Traceback" not in said, said
    assert f"could not be written ({out}/checkpoints/step-000003: No space left on device)" in said, said
    assert f"--resume continues from the last periodic one, {out}/checkpoints/step-000002" in said, said
    assert "checkpoint saved" not in said and "Nothing half-written" not in said


def test_a_stop_while_the_outputs_are_written_names_the_periodic_checkpoint_when_its_own_cannot_be(tmp_path):
    """The stop lands in the final save and the disk refuses the stop's checkpoint: the periodic one stands."""
    periodic = tmp_path / "checkpoints" / "step-000002"
    periodic.mkdir(parents=True)
    (periodic / "state.json").write_text("{}")

    class Stopped:
        def save(self, out_dir):
            raise KeyboardInterrupt

    def full():
        raise LowdimError(f"{tmp_path}/checkpoints/step-000004/trainable.safetensors: could not write "
                          f"(No space left on device)")

    with pytest.raises(runs.Interrupted) as stopped:
        train._save_outputs(Stopped(), tmp_path, 4, full, runs.RESUME)
    assert "could not be written" in str(stopped.value) and str(periodic) in str(stopped.value), stopped.value
