"""A ``train-hypernet --resume`` with other settings than the checkpoint's names each by the flag the user typed
under the ``lowdim`` command (``--lr``, ``--no-augment``, ``--width``), and by its field from Python (review BX2)."""

from __future__ import annotations

import json

import pytest
from hypertrain_jobs import HYPER, TINY_VIT, job  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim_cli.main import main
from lowdim_sd.hypertrain import train_hypernet

pytestmark = pytest.mark.usefixtures("one_thread")


def _args(weights, out) -> list[str]:
    return ["train-hypernet", "-w", str(weights), "-o", str(out), "--encoder-config", json.dumps(TINY_VIT),
            "--width", "16", "--heads", "2", "--iterations", "1", "--batch-size", "2", "--val-identities", "1",
            "--alpha", "0", "--checkpoint-every", "1"]


def test_a_refused_resume_names_the_commands_own_flags(weights, tmp_path, capsys):
    args = _args(weights, tmp_path / "h")
    assert main([*args, "--steps", "1"]) == 0
    capsys.readouterr()
    changed = [*args, "--steps", "2", "--resume", "--lr", "1e-3", "--no-augment", "--seed", "3", "--all-images"]
    changed[changed.index("--width") + 1] = "32"
    assert main(changed) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert ("other settings: no --all-images there, --all-images now; --augment there, --no-augment now; "
            "--width (16 there, 32 now); --lr (0.0001 there, 0.001 now); --seed (0 there, 3 now); resume with the "
            "same options") in said
    assert "learning_rate" not in said and "True" not in said and "hyper." not in said
    assert not (tmp_path / "h" / "checkpoints" / "step-000002").exists()  # refused before anything is written


def test_a_refused_resume_from_python_names_the_fields_the_user_set(weights, tmp_path):
    train_hypernet(job(weights, tmp_path / "p", steps=2, alpha=0.0), progress=False)
    hyper = {**HYPER, "width": 32, "encoder_config": {**TINY_VIT, "intermediate_size": 64}}
    with pytest.raises(lowdim.LowdimError) as refused:
        train_hypernet(job(weights, tmp_path / "p", steps=4, resume=True, learning_rate=1e-3,
                           augment=False, diffusion_iterates="last", hyper=hyper), progress=False)
    said = str(refused.value)
    assert ("other settings: HyperTrainJob(alpha=...) (0.0 there, 1.0 now); HyperTrainJob(augment=...) (on there, "
            "off now); HyperTrainJob(diffusion_iterates=...) "
            "('all' there, 'last' now); HyperTrainJob(hyper=...) encoder_config.intermediate_size (32 there, 64 now); "
            "HyperTrainJob(hyper=...) width (16 there, 32 now); HyperTrainJob(learning_rate=...) (0.0001 there, 0.001 "
            "now); resume with the same settings, or choose another out") in said, said
    raw = ("learning_rate (", "augment (", "hyper.", "hyper={", "--", "True", "{")
    assert not [word for word in raw if word in said], said
    assert not (tmp_path / "p" / "checkpoints" / "step-000004").exists()  # refused before anything is written


def test_a_resume_into_a_folder_with_no_checkpoint_says_it_starts_from_step_0(weights, tmp_path, capsys):
    typo = tmp_path / "typo"  # a mistyped --out would otherwise train from scratch without a word
    assert main([*_args(weights, typo), "--steps", "1", "--resume"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"--resume: {typo} holds no checkpoint, so the run starts from step 0" in said
    with pytest.warns(UserWarning, match=r"resume=True: .*fresh holds no checkpoint, so the run starts from step 0"):
        train_hypernet(job(weights, tmp_path / "fresh", steps=1, resume=True, alpha=0.0), progress=False)
