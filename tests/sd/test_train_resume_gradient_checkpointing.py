"""``--gradient-checkpointing`` only trades compute for memory (the step is the same, ``test_train``), so a
``lowdim train --resume`` may turn it on after an out-of-memory stop, or off again, as precompute's rerun may; a
checkpoint made before it was left out of the recorded settings (it holds the key) resumes too."""

from __future__ import annotations

import json

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim_cli.main import main
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refs") / "me"
    save_images(torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1, folder, "me")
    return folder


def _train(tiny_sd, refs, out, steps: int, *extra: str) -> list[str]:
    return ["train", "-m", str(tiny_sd), "-i", str(refs), "--out", str(out), "--checkpoint-every", "1", "--steps",
            str(steps), *extra]


def _steps_done(out) -> list[str]:
    return sorted(path.name for path in (out / "checkpoints").iterdir())


def test_a_resume_may_turn_gradient_checkpointing_on_and_off(tiny_sd, refs, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(_train(tiny_sd, refs, out, 1)) == 0
    assert main(_train(tiny_sd, refs, out, 2, "--resume", "--gradient-checkpointing")) == 0, capsys.readouterr().err
    assert main(_train(tiny_sd, refs, out, 3, "--resume")) == 0, capsys.readouterr().err
    assert _steps_done(out) == ["step-000002", "step-000003"]  # each resume went on, none started over


def _record_as_older_versions_did(out, checkpointing: bool) -> None:
    for state_path in (out / "checkpoints").glob("step-*/state.json"):
        state = json.loads(state_path.read_text())
        state["settings"]["gradient_checkpointing"] = checkpointing
        state_path.write_text(json.dumps(state))


def test_a_checkpoint_that_recorded_it_resumes_with_it_changed(tiny_sd, refs, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(_train(tiny_sd, refs, out, 1)) == 0
    _record_as_older_versions_did(out, False)
    assert main(_train(tiny_sd, refs, out, 2, "--resume", "--gradient-checkpointing")) == 0, capsys.readouterr().err
    assert _steps_done(out) == ["step-000001", "step-000002"]


def test_from_python_an_older_checkpoint_resumes_and_other_options_are_still_refused(tiny_sd, refs, tmp_path):
    def job(steps: int, **config) -> TrainJob:
        return TrainJob(model=str(tiny_sd), images=[refs], out=tmp_path / "p", resume=steps > 1,
                        config=TrainConfig(steps=steps, checkpoint_every=1, **config))

    run_train(job(1), progress=False)
    _record_as_older_versions_did(tmp_path / "p", True)
    with pytest.raises(lowdim.LowdimError, match=r"other settings: TrainJob\(learning_rate=\.\.\.\) "
                                                 r"\(0.002 there, 0.01 now\); resume") as refused:
        run_train(job(2, learning_rate=1e-2), progress=False)
    assert "gradient_checkpointing" not in str(refused.value)
    assert run_train(job(2), progress=False).start_step == 1
