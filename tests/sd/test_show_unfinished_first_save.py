"""``lowdim show OUT`` where a run was killed while writing its first checkpoint: OUT's only step folder has no
state.json (``checkpoints.complete`` writes it last), so no resume continues from it. Show says what the folder is
(a run with no finished checkpoint yet, the unfinished save's step) and what a resume does with it: starts from
step 0, as ``lowdim train --resume`` does (and warns), and removes the unfinished save at its first save."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_train_runs import one_subject, train_args  # tests/sd, on the path as pytest puts it

from lowdim_cli.main import main
from lowdim_sd import checkpoints
from lowdim_sd.file_info import describe

pytestmark = pytest.mark.usefixtures("one_thread")
STEP = "step-000002"
KIND = ("a lowdim train run stopped before its first checkpoint was finished (an unfinished save at step 2; "
        "--resume starts from step 0)")


class _Killed(BaseException):
    """A SIGKILL as the run sees it: nothing catches it, nothing is cleaned up after it."""


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    return one_subject(tmp_path_factory.mktemp("refs") / "me", side=16)


@pytest.fixture(scope="module")
def killed(tiny_sd, refs, tmp_path_factory) -> Path:
    """`lowdim train --checkpoint-every 2` killed while its first save (step 2) writes state.json: the trained and
    optimizer states are on disk, the marker of a complete checkpoint is not."""
    out = tmp_path_factory.mktemp("killed") / "run"

    def killed_while_marking(folder, state, keep):
        raise _Killed

    with pytest.MonkeyPatch.context() as patch, pytest.raises(_Killed):
        patch.setattr(checkpoints, "complete", killed_while_marking)
        main(train_args(tiny_sd, refs, out, "--steps", "5", "--checkpoint-every", "2"))
    saved = sorted(path.name for path in (out / "checkpoints" / STEP).iterdir())
    assert saved == ["optimizer.safetensors", "trainable.safetensors"]
    assert [path.name for path in (out / "checkpoints").iterdir()] == [STEP]
    return out


def _said(capsys, *args: str) -> str:
    code = main(["show", *args])
    out, err = capsys.readouterr()
    said = " ".join((out + err).split())
    assert code == 0, said
    return said


def test_the_folder_of_a_run_killed_in_its_first_save_says_so_and_that_resume_starts_from_step_0(killed, capsys):
    said = _said(capsys, str(killed))
    assert said.startswith(f"{killed}: {KIND} ")
    rows = dict(describe(killed).rows)
    assert rows["step"] == "2"
    assert rows["unfinished"].endswith("no finished checkpoint, so --resume starts from step 0 (as a run without "
                                       "it does), and its first save removes this one")
    assert rows["checkpoint"] == f"none finished; {killed / 'checkpoints' / STEP} is a save cut short"
    assert said.endswith(f"use it: lowdim train ... -o {killed} --resume")


def test_json_says_no_finished_checkpoint_and_the_step_a_resume_starts_at(killed, capsys):
    shown = json.loads(_said(capsys, str(killed), "--json"))
    assert shown["kind"] == KIND
    assert shown["fields"]["step"] == 2
    assert shown["fields"]["checkpoint"] == {"folder": None, "checkpoints": 0,
                                             "unfinished": str(killed / "checkpoints" / STEP), "resumes_at_step": 0}


@pytest.mark.parametrize("left", [("trainable.safetensors",), ()])
def test_a_save_killed_earlier_is_said_the_same_with_what_it_holds(killed, tmp_path, capsys, left):
    """Killed while writing the optimizer state (the trained state alone is there), or the trained state (only
    safetensors' hidden temp file is)."""
    run = shutil.copytree(killed, tmp_path / "run")
    folder = run / "checkpoints" / STEP
    for path in folder.iterdir():
        if path.name not in left:
            path.unlink()
    if not left:
        (folder / ".tmp-trainable").write_bytes(b"cut short")
    said = _said(capsys, str(run))
    writer = "train " if left else ""
    assert said.startswith(f"{run}: {KIND.replace('train ', writer)} ")
    assert "use it:" in said if left else "use it:" not in said  # no file says which command wrote it


def test_what_show_says_is_what_train_resume_does(killed, tiny_sd, refs, tmp_path, capsys):
    run = shutil.copytree(killed, tmp_path / "run")
    assert main(train_args(tiny_sd, refs, run, "--steps", "1", "--resume")) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"{run} holds no checkpoint, so the run starts from step 0" in said
    assert [path.name for path in (run / "checkpoints").iterdir()] == ["step-000001"]  # the unfinished one removed


def test_a_step_folder_that_is_a_link_is_refused_as_resume_refuses_it(killed, tmp_path, capsys):
    run = shutil.copytree(killed, tmp_path / "run")
    elsewhere = shutil.move(run / "checkpoints" / STEP, tmp_path / "elsewhere")
    (run / "checkpoints" / STEP).symlink_to(elsewhere)
    shown = json.loads(_said(capsys, str(run), "--json"))
    assert shown["fields"]["refused"].startswith(f"{run / 'checkpoints' / STEP} is a symbolic link")
    assert shown["use"] == ""
