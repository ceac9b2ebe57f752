"""What `lowdim train` records in its files and how it says what went wrong: a model path that does not exist,
the `--full` folder's record and permissions, the --token word, the recipe and base model an adapter carries,
--init's learned word, the --resume mismatch lines, and `show` on a Textual Inversion adapter."""

from __future__ import annotations

import json
import os
import stat
import warnings

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim.atomic import current_umask
from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd import modes
from lowdim_sd.file_info import describe
from lowdim_sd.loading import ModelLoadError, load_sd
from lowdim_sd.merged_model import read_merge_record
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def refs(tmp_path):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    save_images(images, tmp_path / "refs", "me")
    return tmp_path / "refs"


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def one_line_error(code: int, text: str) -> str:
    assert code != 0 and "Traceback" not in text, text
    return text


# ----------------------------------------------------------------------------- F1: a path that does not exist


@pytest.mark.parametrize("name", ["no such model", "My Models/sd15", "a b/c"])
def test_a_missing_model_path_with_a_space_is_one_line_not_a_hub_traceback(name):
    with pytest.raises(ModelLoadError, match="no such model file or folder"):
        load_sd(name)


@pytest.mark.parametrize("name", ["owner/model-v1.5", "someone/turbo.v2"])
def test_a_hub_id_with_a_dot_is_looked_up_on_the_hub_not_taken_for_a_missing_file(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=f"could not load '{name}': no local folder or file of that name, and the "
                                             f"hub id is neither in the local cache nor reachable"):
        load_sd(name)
    with pytest.raises(ModelLoadError, match="model.safetensors: no such model file or folder"):
        load_sd("owner/model.safetensors")  # a checkpoint's name: a missing file, never a hub id


def test_train_and_generate_with_a_missing_model_path_say_so_in_one_line(refs, tmp_path, capsys):
    text = one_line_error(*run(capsys, "train", "-m", "no such model", "-i", refs, "--steps", 2, "-o", tmp_path / "x"))
    assert "no such model" in text
    text = one_line_error(*run(capsys, "generate", "-m", "tiny sd", "-p", "a face", "--steps", 2, "-o", tmp_path / "g"))
    assert "tiny sd" in text


# ----------------------------------------------------------------------- F3, F4: the model train --full writes


@pytest.fixture(scope="module")
def full_run(tiny_sd, tmp_path_factory):
    """A --full run through the CLI with --token zwx: (its folder, what train printed)."""
    folder = tmp_path_factory.mktemp("full")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    save_images(images, folder / "refs", "me")
    code = main(["train", "-m", str(tiny_sd), "-i", str(folder / "refs"), "--steps", "2", "--full", "--token", "zwx",
                 "--lr", "1e-5", "--out", str(folder / "run")])
    assert code == 0
    return folder / "run"


def test_the_full_model_folder_records_its_base_token_steps_and_rate(full_run, tiny_sd):
    record = read_merge_record(full_run / "model")
    assert record["made_by"] == "lowdim train --full"
    assert record["base_model"] == str(tiny_sd.resolve()) and record["tokens"] == ["zwx"]
    assert record["steps"] == 2 and record["learning_rate"] == 1e-5 and record["images"] == 2


def test_show_describes_the_full_model_and_ends_with_a_generate_line(full_run):
    info = describe(full_run / "model")
    rows = dict(info.rows)
    assert "lowdim train --full" in info.kind and rows["token"] == "zwx"
    assert "2 steps" in rows["trained"]
    assert info.use == f"lowdim generate -m {full_run / 'model'} -p 'a [V] face'"


def test_generate_on_the_full_model_maps_v_to_its_token_without_the_never_taught_warning(full_run, tmp_path, capsys):
    code, text = run(capsys, "generate", "-m", full_run / "model", "-p", "a [V] face", "--steps", 2,
                     "-o", tmp_path / "g")
    assert code == 0, text
    assert "never taught" not in text
    assert json.loads((tmp_path / "g" / "prompts.json").read_text())["settings"]["token"] == "zwx"


def test_the_full_models_files_are_readable_per_the_umask_and_no_temp_is_left(full_run):
    wanted = 0o666 & ~current_umask()
    files = [path for path in (full_run / "model").rglob("*") if path.is_file()]
    assert files and all(stat.S_IMODE(path.stat().st_mode) == wanted for path in files), \
        [(path.name, oct(path.stat().st_mode)) for path in files]
    assert not [entry.name for entry in full_run.iterdir() if entry.name.startswith(".")]


def test_a_full_save_that_fails_halfway_leaves_no_half_model_folder(tiny_sd, refs, tmp_path, monkeypatch):
    real = modes.save_pipeline

    def broken(pipe, folder, **options):
        real(pipe, folder, **options)
        raise OSError("disk full")

    monkeypatch.setattr(modes, "save_pipeline", broken)
    job = TrainJob(model=str(tiny_sd), images=[refs], out=tmp_path / "run", full=True,
                   config=TrainConfig(steps=1, augment=False))
    with pytest.raises(OSError, match="disk full"):
        run_train(job, progress=False)
    left = list((tmp_path / "run").rglob("*")) if (tmp_path / "run").exists() else []
    assert not [path for path in left if path.name == "model" or path.name.startswith(".model")], left


# ------------------------------------------------------------------------------------------ F6: --token


@pytest.mark.parametrize("token", ["", "   ", "a b", " sks"])
def test_train_refuses_a_token_that_is_not_one_word(refs, tmp_path, capsys, token):
    text = one_line_error(*run(capsys, "train", "-m", "tinyfaces", "-i", refs, "--steps", 2, "--token", token,
                               "-o", tmp_path / "x"))
    assert "--token" in text and "one word" in text
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("token", ["a b", "\t"])
def test_personalize_refuses_a_token_that_is_not_one_word(refs, tmp_path, capsys, token):
    text = one_line_error(*run(capsys, "personalize", "-m", "tinyfaces", "-i", refs / "me_000.png",
                               "--token", token, "-o", tmp_path / "x"))
    assert "--token" in text and "one word" in text


# ----------------------------------------------------------------------- F7, F9: the adapter's recipe and base


@pytest.fixture(scope="module")
def dog_adapter(tiny_sd, tmp_path_factory):
    """An adapter trained with another prompt and token, the model named by a relative path."""
    folder = tmp_path_factory.mktemp("dog")
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    save_images(images, folder / "refs", "me")
    here = os.getcwd()
    os.chdir(tiny_sd.parent)
    try:
        code = main(["train", "-m", tiny_sd.name, "-i", str(folder / "refs"), "--steps", "2", "--prompt",
                     "a photo of [V] dog", "--token", "zwx", "--lr", "0.001", "--out", str(folder / "run")])
    finally:
        os.chdir(here)
    assert code == 0
    return folder / "run" / "adapter.safetensors"


def test_a_trained_adapter_records_its_recipe(dog_adapter):
    recipe = json.loads(lowdim.read_adapter(dog_adapter).metadata["extra"])
    assert recipe["made_by"] == "lowdim train" and recipe["prompt"] == "a photo of [V] dog"
    assert recipe["steps"] == 2 and recipe["learning_rate"] == 0.001 and recipe["images"] == 3


def test_each_subject_of_a_batched_run_records_its_own_image_count(tiny_sd, people, tmp_path):
    run_train(TrainJob(model=str(tiny_sd), subjects=people, out=tmp_path / "run",
                       config=TrainConfig(steps=1, augment=False)), progress=False)
    recipes = {name: json.loads(lowdim.read_adapter(tmp_path / "run" / f"{name}.safetensors").metadata["extra"])
               for name in ("person0", "person1", "person2")}
    counts = {name: recipe["images"] for name, recipe in recipes.items()}
    assert counts == {"person0": 2, "person1": 1, "person2": 1}


def test_show_suggests_the_trained_prompt_and_an_absolute_base_model(dog_adapter, tiny_sd):
    info = describe(dog_adapter)
    assert "-p 'a photo of [V] dog'" in info.use
    assert f"-m {tiny_sd.resolve()} " in info.use
    assert lowdim.read_adapter(dog_adapter).metadata["base_model"] == str(tiny_sd.resolve())


# ---------------------------------------------------------------------------------- F8: --init's own word


def test_init_trains_under_the_initial_adapters_word_unless_told_otherwise(dog_adapter, tiny_sd, refs, tmp_path,
                                                                           capsys):
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--steps", 1, "--init", dog_adapter,
                     "-o", tmp_path / "same")
    assert code == 0, text
    assert lowdim.read_adapter(tmp_path / "same" / "adapter.safetensors").metadata["token"] == "zwx"
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--steps", 1, "--init", dog_adapter,
                     "--token", "qqq", "-o", tmp_path / "other")
    assert code == 0, text
    assert "'zwx'" in text and "--token" in text  # said: the frozen part answers to another word
    assert lowdim.read_adapter(tmp_path / "other" / "adapter.safetensors").metadata["token"] == "qqq"


# ---------------------------------------------------------------------------------- F11: --resume lines


def test_resume_mismatch_lists_each_setting_once_and_names_resolution(tiny_sd, refs, tmp_path):
    def job(**changes):
        config = TrainConfig(steps=2, augment=False, checkpoint_every=1, seed=changes.pop("seed", 0))
        return TrainJob(model=str(tiny_sd), images=[refs], out=tmp_path / "run", config=config, **changes)

    run_train(job(), progress=False)
    with pytest.raises(LowdimError) as caught:
        run_train(job(seed=3, resume=True), progress=False)
    assert str(caught.value).count("TrainConfig(seed=...) (0 there, 3 now)") == 1, caught.value
    with pytest.raises(LowdimError) as caught:
        run_train(job(resume=True, resolution=24), progress=False)
    message = str(caught.value)
    assert "TrainJob(resolution=...) (16 there, 24 now)" in message, message
    assert "--" not in message and "'adapter'" not in message, message


# ------------------------------------------------------------------------------- F15: show on a TI adapter


def test_show_says_a_textual_inversion_adapter_has_no_frozen_bases(tiny_sd, refs, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_train(TrainJob(model=str(tiny_sd), images=[refs], out=tmp_path, space="ti",
                           config=TrainConfig(steps=1, augment=False)), progress=False)
    info = describe(tmp_path / "adapter.safetensors")
    assert dict(info.rows)["frozen bases"] == "none"
    assert info.values["frozen bases"] is None
