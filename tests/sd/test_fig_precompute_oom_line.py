"""Out of memory inside `lowdim precompute` says one stop line, precompute's, as a Ctrl-C at the same step does
('out of memory' in place of 'Interrupted'), then the CLI's line of what to change; not train's line of the batch's
steps too, which named a checkpoint precompute may then discard ("saved" beside "lost")."""

from __future__ import annotations

import shutil

import pytest
import torch
from cli_train_runs import run  # tests/sd, on the path as pytest puts it
from images_for_tests import save_images

from lowdim_sd import train as engine

pytestmark = pytest.mark.usefixtures("one_thread")


def stop_at_step(monkeypatch, at: int, stop: BaseException) -> None:
    """``stop`` raised as the engine's ``at``-th step (counted from 1 over the whole run) begins."""
    real, calls = engine._one_step, []

    def step(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise stop
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_one_step", step)


# Two steps a batch, two identities a batch: step 2 stops the first batch in flight (its step 1 kept), step 3 stops
# the second batch as it begins (the first batch in the index, the second one's folder holds nothing to resume).
@pytest.mark.parametrize("at, kept", [(2, "kept 1 of 2 steps of the batch in flight"),
                                      (3, "2 are kept in")])
def test_out_of_memory_says_precompute_s_one_stop_line_as_ctrl_c_does(tiny_sd, tmp_path, capsys, monkeypatch,
                                                                     at, kept):
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    save_images(images, tmp_path / "faces", "person")
    args = ("precompute", "-m", tiny_sd, "-i", tmp_path / "faces", "-o", tmp_path / "w", "--steps", 2,
            "--batch-subjects", 2, "--no-crop")

    stop_at_step(monkeypatch, at, KeyboardInterrupt())
    code, interrupted = run(capsys, *args)
    assert code == 130 and kept in interrupted
    said = interrupted[interrupted.index("Interrupted ") + len("Interrupted "):]  # what was kept, how to continue
    shutil.rmtree(tmp_path / "w")  # the same run again, stopped at the same step

    stop_at_step(monkeypatch, at, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    code, text = run(capsys, *args)
    assert code == 1 and "Traceback" not in text
    assert text.count("Warning:") == 1, text  # precompute's line alone, not train's before it
    assert f"Warning: out of memory {said} Error: out of GPU memory" in text, text
    assert "--batch-subjects" in text.split("Error:")[1]  # the CLI's line of what to change

    monkeypatch.undo()  # what the line says to do continues the run
    code, text = run(capsys, *args)
    assert code == 0 and "Warning:" not in text
    assert ("skipped 2" if at == 3 else "resuming the stopped batch (person_000, person_001) at step 1") in text
