"""A swapped -o: train-hypernet into a weight folder (its own -w, the usual slip, or another precompute's), or
precompute into a train-hypernet run's folder, is refused in one line with nothing written, so no folder ends up
half weights, half network; each command's own resume into its own folder still works."""

from __future__ import annotations

import shutil

import pytest

from lowdim_cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(weight_folders, tmp_path_factory):
    """Two weight folders (their pictures in faces-a, faces-b) and a finished train-hypernet run on the first."""
    root = tmp_path_factory.mktemp("swapped")
    first, second = weight_folders(root, "a", 4, seed=3), weight_folders(root, "b", 4, seed=4)
    assert main(_train(first, root / "h", "--checkpoint-every", "1")) == 0
    return root, first, second


def _train(*args) -> list[str]:
    weights, out, *rest = args
    return ["train-hypernet", *sum((["-w", str(w)] for w in (weights if isinstance(weights, list) else [weights])),
                                   []), "-o", str(out), "--encoder-config", "tiny", "--width", "16", "--steps", "1",
            "--val-identities", "1", "--device", "cpu", *rest]


def _precompute(tiny_sd, faces, out) -> list[str]:
    return ["precompute", "-m", str(tiny_sd), "-i", str(faces), "-o", str(out), "--steps", "3",
            "--batch-subjects", "4", "--no-crop", "--device", "cpu"]


def _listing(folder) -> list[tuple[str, int, int]]:
    return sorted((str(path.relative_to(folder)), path.stat().st_size, path.stat().st_mtime_ns)
                  for path in folder.rglob("*"))


def _refused(capsys, args, folder) -> str:
    before = _listing(folder)
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert _listing(folder) == before  # nothing written, nothing cleared
    return err


WEIGHT_FOLDER = ("is a precomputed weight folder (lowdim precompute); train-hypernet writes its network and "
                 "checkpoints elsewhere: pass another -o")


@pytest.mark.parametrize("extra", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_train_hypernet_into_its_own_weight_folder_is_refused(data, capsys, extra):
    _, first, _ = data
    err = _refused(capsys, _train(first, first, *extra), first)
    assert f"{first}: {WEIGHT_FOLDER}" in err


def test_train_hypernet_into_any_of_several_weight_folders_or_another_one_is_refused(data, capsys):
    _, first, second = data
    assert WEIGHT_FOLDER in _refused(capsys, _train([first, second], second), second)
    assert WEIGHT_FOLDER in _refused(capsys, _train(first, second), second)  # another precompute's folder


def test_train_hypernet_names_the_folder_by_path_however_spelled(data, capsys, monkeypatch):
    root, first, _ = data
    monkeypatch.chdir(root)
    assert WEIGHT_FOLDER in _refused(capsys, _train(first, "./a/../a"), first)


def test_train_hypernet_resume_into_its_own_run_still_works(data, capsys):
    root, first, _ = data
    run = root / "resumed"
    shutil.copytree(root / "h", run)
    capsys.readouterr()
    assert main(_train(first, run, "--checkpoint-every", "1", "--steps", "2", "--resume")) == 0
    assert (run / "checkpoints" / "step-000002").is_dir()



def test_precompute_into_a_finished_train_hypernet_run_is_refused(data, tiny_sd, capsys):
    root, _, _ = data
    finished = root / "finished"
    shutil.copytree(root / "h", finished)
    err = _refused(capsys, _precompute(tiny_sd, root / "faces-a", finished), finished)
    assert err.endswith(f"{finished}: holds a train-hypernet run (its hypernet.safetensors); precompute writes its "
                        f"weights elsewhere: pass another -o")


def test_precompute_into_a_stopped_train_hypernet_run_is_refused(data, tiny_sd, capsys):
    """A run stopped before its end holds only checkpoints: they are told by their step folders."""
    root, _, _ = data
    stopped = root / "stopped"
    shutil.copytree(root / "h", stopped)
    (stopped / "hypernet.safetensors").unlink()
    err = _refused(capsys, _precompute(tiny_sd, root / "faces-a", stopped), stopped)
    assert "holds a train-hypernet run (checkpoints up to step-000001); precompute writes its weights" in err


def test_precompute_resume_into_its_own_weight_folder_still_works(data, tiny_sd, capsys):
    root, _, _ = data
    again = root / "again"
    shutil.copytree(root / "a", again)
    capsys.readouterr()
    assert main(_precompute(tiny_sd, root / "faces-a", again)) == 0
    assert "skipped 4 already done" in capsys.readouterr().out
