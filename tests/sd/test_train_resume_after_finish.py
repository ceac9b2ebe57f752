"""`lowdim train --resume` on a run that finished: it says which step it continues from; a longer --steps continues
from where the finished run ended (not from the checkpoint an earlier Ctrl-C left), as an uninterrupted run would;
the same --steps trains and rewrites nothing and says so. A --full run keeps no checkpoint of its end (a UNet and
AdamW's two moments) unless --checkpoint-every asks for checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from cli_train_runs import interrupt_at, reference_pictures, run  # noqa: F401  (a fixture: refs)
from safetensors.torch import load_file

from lowdim.errors import LowdimError
from lowdim_sd import checkpoints, workflows
from lowdim_sd import train as engine
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

pytestmark = pytest.mark.usefixtures("one_thread")


def train(tiny_sd, refs, out, *extra) -> tuple:
    return ("train", "-m", tiny_sd, "-i", refs, "--out", out, *extra)


def stopped_then_finished(capsys, monkeypatch, args: tuple, at: int, steps: int) -> None:
    """The reviewer's afternoon: a run stopped at step ``at``, then resumed to its end."""
    interrupt_at(monkeypatch, at)
    assert run(capsys, *args, "--steps", steps)[0] == 130
    monkeypatch.undo()
    code, text = run(capsys, *args, "--steps", steps, "--resume")
    assert code == 0, text


def checkpoint_names(out) -> list[str]:
    folder = out / "checkpoints"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_a_resume_says_the_step_it_continues_from(tiny_sd, refs, tmp_path, capsys, monkeypatch):
    args = train(tiny_sd, refs, tmp_path / "o")
    interrupt_at(monkeypatch, 2)
    assert run(capsys, *args, "--steps", 4)[0] == 130
    monkeypatch.undo()
    code, text = run(capsys, *args, "--steps", 4, "--resume")
    assert code == 0 and "2 steps in" in text and "(from step 2)" in text, text


def test_a_longer_resume_of_a_finished_run_continues_from_its_end_as_one_run_would(tiny_sd, refs, tmp_path, capsys,
                                                                                   monkeypatch):
    args = train(tiny_sd, refs, tmp_path / "o")
    stopped_then_finished(capsys, monkeypatch, args, at=1, steps=3)
    assert checkpoint_names(tmp_path / "o") == ["step-000003"]  # the stop's step-000001 went: it is not the newest
    code, text = run(capsys, *args, "--steps", 5, "--resume")
    assert code == 0 and "2 steps in" in text and "(from step 3)" in text, text  # was 4 steps, from step 1
    assert run(capsys, *train(tiny_sd, refs, tmp_path / "straight"), "--steps", 5)[0] == 0
    resumed, straight = (load_file(tmp_path / name / "adapter.safetensors") for name in ("o", "straight"))
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[key], straight[key]) for key in straight)


def test_resuming_a_finished_run_at_its_own_steps_trains_and_rewrites_nothing(tiny_sd, refs, tmp_path, capsys,
                                                                            monkeypatch):
    args = train(tiny_sd, refs, tmp_path / "o")
    stopped_then_finished(capsys, monkeypatch, args, at=1, steps=2)
    adapter = tmp_path / "o" / "adapter.safetensors"
    before = adapter.read_bytes(), adapter.stat().st_mtime_ns
    calls: list[int] = []
    real = engine._one_step
    monkeypatch.setattr(engine, "_one_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    code, text = run(capsys, *args, "--steps", 2, "--resume")
    assert code == 0 and not calls, text
    assert "already finished at step 2" in text and "nothing to train" in text and "--steps above 2" in text, text
    assert "wrote" not in text
    assert (adapter.read_bytes(), adapter.stat().st_mtime_ns) == before


def test_a_checkpoint_naming_a_file_outside_the_run_is_not_taken_for_a_finished_run(tiny_sd, refs, tmp_path,
                                                                                       capsys):
    """state.json is read from disk: a name pointing out of --out (which exists) never stops a run from writing."""
    args = train(tiny_sd, refs, tmp_path / "o", "--steps", 2)
    assert run(capsys, *args)[0] == 0
    state = tmp_path / "o" / "checkpoints" / "step-000002" / "state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "outputs": ["../refs"]}))
    (tmp_path / "o" / "adapter.safetensors").unlink()
    code, text = run(capsys, *args, "--resume")
    assert code == 0 and "already finished" not in text and (tmp_path / "o" / "adapter.safetensors").is_file(), text


def test_a_run_never_stopped_can_be_continued_too(tiny_sd, refs, tmp_path, capsys):
    args = train(tiny_sd, refs, tmp_path / "o")
    assert run(capsys, *args, "--steps", 2)[0] == 0
    code, text = run(capsys, *args, "--steps", 3, "--resume")
    assert code == 0 and "1 step in" in text and "(from step 2)" in text, text


def test_from_python_the_result_says_where_the_run_continued_and_that_nothing_was_left_to_do(tiny_sd, refs,
                                                                                             tmp_path):
    def job(steps: int, resume: bool = False) -> TrainJob:
        return TrainJob(model=str(tiny_sd), images=[refs], out=tmp_path / "o", resume=resume,
                        config=TrainConfig(steps=steps, augment=False))

    run_train(job(2), progress=False)
    longer = run_train(job(3, resume=True), progress=False)
    assert longer.start_step == 2 and len(longer.losses) == 1 and longer.outputs
    finished = r"already finished at step 3 .*nothing to train.*TrainConfig\(steps=\.\.\.\) above 3"
    with pytest.warns(UserWarning, match=finished):
        again = run_train(job(3, resume=True), progress=False)
    assert again.start_step == 3 and again.losses == [] and again.outputs == []


def test_a_finished_full_run_keeps_no_checkpoint_unless_asked_and_never_a_stale_one(tiny_sd, refs, tmp_path, capsys,
                                                                                    monkeypatch):
    args = train(tiny_sd, refs, tmp_path / "full", "--full")
    stopped_then_finished(capsys, monkeypatch, args, at=1, steps=2)
    assert checkpoint_names(tmp_path / "full") == []  # the stop's step-000001 would restart a --resume behind
    model = (tmp_path / "full" / "model" / "model_index.json").read_bytes()
    code, text = run(capsys, *args, "--steps", 3, "--resume")
    assert code == 1 and "finished at step 2 and kept no checkpoint" in text, text  # not a rerun from step 1
    assert (tmp_path / "full" / "model" / "model_index.json").read_bytes() == model
    asked = train(tiny_sd, refs, tmp_path / "asked", "--full", "--checkpoint-every", 5)
    assert run(capsys, *asked, "--steps", 2)[0] == 0
    assert checkpoint_names(tmp_path / "asked") == ["step-000002"]
    code, text = run(capsys, *asked, "--steps", 3, "--resume")
    assert code == 0 and "1 step in" in text and "(from step 2)" in text, text


def test_resuming_a_finished_full_run_says_it_kept_no_checkpoint_before_the_model_loads(tiny_sd, refs, tmp_path,
                                                                                       capsys, monkeypatch):
    args = train(tiny_sd, refs, tmp_path / "full", "--full")
    assert run(capsys, *args, "--steps", 2)[0] == 0
    model = (tmp_path / "full" / "model" / "model_index.json").read_bytes()
    with monkeypatch.context() as patched:
        patched.setattr(workflows, "load_sd", lambda *a, **k: pytest.fail("the model loaded before the refusal"))
        code, text = run(capsys, *args, "--steps", 3, "--resume")
    assert code == 1 and "Traceback" not in text, text
    said = (f"{tmp_path / 'full' / 'model'}: the run finished at step 2 and kept no checkpoint (a --full run keeps "
            f"one only with --checkpoint-every), so it cannot continue; pass --overwrite to start it anew")
    assert said in text, text
    assert (tmp_path / "full" / "model" / "model_index.json").read_bytes() == model
    from_python = TrainJob(model=str(tiny_sd), images=[refs], out=tmp_path / "full", full=True, resume=True,
                           config=TrainConfig(steps=3))
    with pytest.raises(LowdimError, match=r"only with TrainConfig\(checkpoint_every=\.\.\.\).*overwrite=True"):
        run_train(from_python, progress=False)
    code, text = run(capsys, *args, "--steps", 3, "--overwrite")
    assert code == 0 and "3 steps in" in text, text  # what the line offers works


def test_a_model_folder_no_full_run_wrote_gets_the_plain_overwrite_line(tiny_sd, refs, tmp_path, capsys):
    """A folder named model that holds no record of a --full run (another tool's) tells no story of a run."""
    (tmp_path / "full" / "model").mkdir(parents=True)
    code, text = run(capsys, *train(tiny_sd, refs, tmp_path / "full", "--full"), "--steps", 2, "--resume")
    assert code == 1 and "already exists; pass --overwrite" in text and "finished" not in text, text


def test_a_subjects_run_missing_one_of_its_files_is_not_finished_and_the_resume_writes_it(tiny_sd, people, tmp_path,
                                                                                           capsys):
    """One adapter per sub-folder: a resume at the same --steps after one file was deleted writes it again."""
    args = ("train", "-m", tiny_sd, "--subjects", people, "--out", tmp_path / "o", "--steps", 2)
    assert run(capsys, *args)[0] == 0
    gone = tmp_path / "o" / "person1.safetensors"
    gone.unlink()
    code, text = run(capsys, *args, "--resume")
    assert code == 0 and "already finished" not in text and gone.is_file(), text


def test_a_resume_at_its_own_steps_only_marks_the_checkpoint_it_started_from(tiny_sd, refs, tmp_path, capsys):
    """The adapter deleted and written again: the checkpoint's weights and optimizer moments (a UNet's size and
    twice that for --full) are not written a second time."""
    args = train(tiny_sd, refs, tmp_path / "o", "--steps", 2)
    assert run(capsys, *args)[0] == 0
    folder = tmp_path / "o" / "checkpoints" / "step-000002"
    names = ("trainable.safetensors", "optimizer.safetensors")
    before = {name: ((folder / name).stat().st_mtime_ns, (folder / name).stat().st_ino) for name in names}
    (tmp_path / "o" / "adapter.safetensors").unlink()
    code, text = run(capsys, *args, "--resume")
    assert code == 0 and (tmp_path / "o" / "adapter.safetensors").is_file(), text
    assert {name: ((folder / name).stat().st_mtime_ns, (folder / name).stat().st_ino) for name in names} == before


class _TwoWeights:
    """The least a checkpoint saves: one parameter and its state."""

    def __init__(self) -> None:
        self.parameters = [torch.nn.Parameter(torch.zeros(2))]

    def state(self) -> dict:
        return {"w": self.parameters[0].detach().clone()}


def test_finishing_never_relabels_an_older_checkpoint_as_the_runs_end(tmp_path):
    """``written`` with a newest checkpoint of another step: the end is saved, so a resume starts at its step."""
    trainable = _TwoWeights()
    optimizer = torch.optim.AdamW(trainable.parameters)
    checkpoints.save(tmp_path, 2, trainable, optimizer, keep=5)
    adapter = tmp_path / "adapter.safetensors"
    adapter.write_bytes(b"x")
    checkpoints.finish(tmp_path, 4, trainable, optimizer, 5, {}, [adapter], written=True)
    newest = checkpoints.latest(tmp_path)
    assert newest is not None and newest.name == "step-000004"
    assert json.loads((newest / "state.json").read_text())["step"] == 4
    assert checkpoints.finished_outputs(tmp_path) == [adapter]
