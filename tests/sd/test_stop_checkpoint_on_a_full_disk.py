"""A Ctrl-C whose own checkpoint the disk refuses: `lowdim train` says so, why, and what --resume continues from."""

from __future__ import annotations

import errno
import sys

from cli_train_runs import interrupt_at, reference_pictures, run  # noqa: F401  (a fixture: refs)

from lowdim_sd import checkpoints


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
