"""`lowdim personalize --hypernet H`: what H's header alone tells is checked before the model loads, and a
folder given as H that holds no hypernetwork is named for what it is (a weight folder, train-hypernet
checkpoints), with the file to pass."""

from __future__ import annotations

import pytest

import lowdim_sd.personalize
from lowdim_cli.main import main


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    return lines[0]


def personalize_args(tiny_sd, face, hypernet, out, *more: str) -> list[str]:
    return ["personalize", "-m", str(tiny_sd), "-i", str(face), "--hypernet", str(hypernet), "-o", str(out),
            "--only-hyper", "--no-preview", "--no-crop", *more]


@pytest.fixture
def no_model_load(monkeypatch):
    """A load of the model fails the test: the refusal must come before it."""
    def load_sd(*args, **kwargs):
        raise AssertionError("the model was loaded before the hypernetwork's header was checked")

    monkeypatch.setattr(lowdim_sd.personalize, "load_sd", load_sd)


@pytest.mark.parametrize(("metadata", "more", "said"), [
    ({"model": "someone/another-model"}, (), "model: file 'someone/another-model'"),
    ({}, ("--space", "lora", "--set", "rank=1"), "space: file lidb"),
    ({"layer_set": "unet-self"}, (), "layer_set: file 'unet-self', expected 'unet+text'"),
], ids=["model", "space", "layer set"])
def test_a_hypernetwork_made_for_another_target_is_refused_before_the_model_loads(
        tiny_sd, face, tmp_path, make_hypernet, no_model_load, capsys, metadata, more, said):
    hypernet = make_hypernet(1, **metadata)
    capsys.readouterr()
    code = main(personalize_args(tiny_sd, face, hypernet, tmp_path / "out", *more))
    line = one_error_line(capsys)
    assert code == 1
    assert f"{hypernet} does not fit the requested target: {said}" in line


def test_a_misspelt_model_is_named_as_such_not_as_another_model(tiny_sd, face, tmp_path, make_hypernet,
                                                                 no_model_load, capsys):
    hypernet = make_hypernet(1)
    capsys.readouterr()
    code = main(["personalize", "-m", "tinyface", "-i", str(face), "--hypernet", str(hypernet),
                 "-o", str(tmp_path / "out"), "--only-hyper", "--no-preview", "--no-crop"])
    line = one_error_line(capsys)
    assert code == 1 and "unknown model 'tinyface'; did you mean tinyfaces?" in line


def test_a_weight_folder_given_as_the_hypernetwork_says_to_train_one_on_it(tiny_sd, face, tmp_path,
                                                                            weight_folders, capsys):
    weights = weight_folders(tmp_path, "weights", 2, seed=1, steps=1)
    capsys.readouterr()
    code = main(personalize_args(tiny_sd, face, weights, tmp_path / "out"))
    line = one_error_line(capsys)
    assert code == 1
    assert (f"{weights}/ is a precomputed weight folder (lowdim precompute), not a hypernetwork: train a "
            f"hypernetwork on it with `lowdim train-hypernet -w {weights}` first") in line


def test_a_checkpoints_folder_names_the_newest_checkpoint_and_the_finished_network(tiny_sd, face, tmp_path,
                                                                                    hypernet_run, capsys):
    capsys.readouterr()
    code = main(personalize_args(tiny_sd, face, hypernet_run / "checkpoints", tmp_path / "out"))
    line = one_error_line(capsys)
    newest = hypernet_run / "checkpoints" / "step-000020" / "hypernet.safetensors"
    assert code == 1
    assert (f"{hypernet_run / 'checkpoints'}/ holds train-hypernet checkpoints; the newest is {newest}: pass that, "
            f"or the finished run's {hypernet_run / 'hypernet.safetensors'}") in line


def test_a_stopped_runs_folder_names_its_newest_checkpoint(tiny_sd, face, tmp_path, hypernet_run, capsys):
    (hypernet_run / "hypernet.safetensors").unlink()  # stopped before the end: checkpoints only
    capsys.readouterr()
    code = main(personalize_args(tiny_sd, face, hypernet_run, tmp_path / "out"))
    line = one_error_line(capsys)
    newest = hypernet_run / "checkpoints" / "step-000020" / "hypernet.safetensors"
    assert code == 1
    assert f"{hypernet_run}/ holds train-hypernet checkpoints; the newest is {newest}: pass that" in line
    assert "--resume" in line  # how to finish it instead


def test_a_step_folder_names_its_hypernetwork(tiny_sd, face, tmp_path, hypernet_run, capsys):
    step = hypernet_run / "checkpoints" / "step-000010"
    capsys.readouterr()
    code = main(personalize_args(tiny_sd, face, step, tmp_path / "out"))
    line = one_error_line(capsys)
    assert code == 1 and f"its hypernetwork is {step / 'hypernet.safetensors'}: pass that" in line
