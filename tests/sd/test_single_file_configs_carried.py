"""A user's own single-file checkpoint, which names no base model, read with ``--model-config FOLDER`` offline: the
commands lowdim prints after it run as printed, and a merge of it loads back with no ``--model-config`` at all
(review ED, findings 1 and 2)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it
from PIL import Image
from safetensors.torch import load_file, save_file

from lowdim_cli.main import main
from lowdim_sd.ldm_checkpoint import save_single_file
from lowdim_sd.tiny import build_tiny_pipeline


@pytest.fixture
def offline(monkeypatch):
    """No hub, as on a machine without network: a checkpoint's configs can only come from a local folder."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def a1111(tmp_path_factory) -> Path:
    """The tiny pipeline as one checkpoint with the bare metadata A1111 and ComfyUI files have: no base model."""
    path = tmp_path_factory.mktemp("a1111") / "mine.safetensors"
    written = save_single_file(build_tiny_pipeline(0), path)
    save_file(load_file(str(written)), str(path), metadata={"format": "pt"})
    return path


@pytest.fixture(scope="module")
def adapter(a1111, tiny_sd, tmp_path_factory) -> Path:
    """An adapter personalized on the checkpoint, its configs from the tiny folder."""
    from lowdim_sd.personalize import PersonalizeJob, personalize

    folder = tmp_path_factory.mktemp("adapter")
    job = PersonalizeJob(model=str(a1111), model_config=str(tiny_sd), image=face_photo(folder), out=folder / "me",
                         steps=2, learning_rate=0.3, preview=False, crop=False, save_dtype="fp32", seed=3)
    return personalize(job, progress=False).adapter


def face_photo(folder: Path) -> Path:
    """A random 32x32 "face photo", as conftest's ``face`` (module-scoped fixtures cannot take that one)."""
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    return save_images(image, folder, "face")[0]


def run(capsys, *args: object) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err  # soft-wrapped: a printed command is one line


def printed_command(text: str, label: str) -> list[str]:
    """The words of the command after ``label`` ("draw it:", "use it:"), as a shell would split them."""
    found = re.search(rf"^{label} (lowdim generate .*?)(?:  \(add .*)?$", text, re.MULTILINE)
    assert found, text
    words = shlex.split(found.group(1))
    assert words[0] == "lowdim"
    return words[1:]


def drawn(folder: Path) -> np.ndarray:
    (image,) = sorted(path for path in folder.glob("*.png") if path.name != "grid.png")
    return np.asarray(Image.open(image), dtype=np.int16)


FAST = ["--steps", "2", "--seed", "7"]  # added after the printed words: a short drawing, the same command


def test_personalize_s_draw_line_keeps_model_config_and_runs_as_printed(a1111, tiny_sd, tmp_path, capsys, offline,
                                                                         monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    code, text = run(capsys, "personalize", "-m", a1111, "--model-config", tiny_sd, "-i", face_photo(tmp_path),
                     "-o", "me", "--steps", "1", "--no-preview", "--no-crop")
    assert code == 0, text
    words = printed_command(text, "draw it:")
    assert words[words.index("--model-config") + 1] == str(tiny_sd)
    code, text = run(capsys, *words, *FAST, "-o", "drawn")
    assert code == 0, text
    assert drawn(tmp_path / "drawn").shape == (16, 16, 3)


def test_show_s_use_line_of_an_adapter_on_a_bare_checkpoint_asks_for_model_config_offline(
        adapter, a1111, tiny_sd, tmp_path, capsys, offline, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    code, text = run(capsys, "show", adapter)
    assert code == 0, text
    words = printed_command(text, "use it:")
    assert words[:3] == ["generate", "-m", str(a1111)]
    assert words[words.index("--model-config") + 1] == "FOLDER"  # as show says for the bare checkpoint itself
    words[words.index("FOLDER")] = str(tiny_sd)
    code, text = run(capsys, *words, *FAST, "-o", "drawn")
    assert code == 0, text


def test_a_merge_of_a_bare_checkpoint_draws_with_no_model_config_what_the_adapter_draws_on_it(
        adapter, a1111, tiny_sd, tmp_path, capsys, offline, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    configs = os.path.relpath(tiny_sd, tmp_path)  # as typed: the record must name it from anywhere
    code, text = run(capsys, "merge", "-m", a1111, "--model-config", configs, "-a", adapter, "-o", "merged.safetensors")
    assert code == 0, text
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, text = run(capsys, "show", tmp_path / "merged.safetensors")
    assert code == 0, text
    words = printed_command(text, "use it:")
    assert "--model-config" not in words
    code, text = run(capsys, *words, *FAST, "-o", "from_merged")
    assert code == 0, text
    prompt = words[words.index("-p") + 1]
    code, text = run(capsys, "generate", "-m", a1111, "--model-config", tiny_sd, "-a", adapter, "-p", prompt, *FAST,
                     "-o", "from_adapter")
    assert code == 0, text
    merged, attached = drawn(Path("from_merged")), drawn(Path("from_adapter"))
    assert np.abs(merged - attached).max() <= 1  # the same weights, summed once before or at each step
    code, text = run(capsys, "generate", "-m", a1111, "--model-config", tiny_sd, "-p", prompt, *FAST, "-o", "bare")
    assert code == 0, text
    assert np.abs(drawn(Path("bare")) - attached).max() > 20  # so the match above is the adapter's


def test_the_interrupted_runs_draw_line_keeps_model_config(a1111, tiny_sd, adapter):
    from types import SimpleNamespace

    from lowdim.option_words import command_line
    from lowdim_sd.personalize_stages import draw_line

    job = SimpleNamespace(model=str(a1111), model_config=str(tiny_sd))
    result = SimpleNamespace(adapter=adapter, subject_prompt=lambda: "a [V] face")
    with command_line():  # the command's words: a Python caller is told the calls
        assert f"-m {a1111} --model-config {tiny_sd} -a" in draw_line(result, job)  # type: ignore[arg-type]


def test_an_adapter_given_as_the_photo_names_the_model_config_its_draw_line_needs_offline(offline, adapter,
                                                                                         tmp_path, capsys):
    code, said = run(capsys, "personalize", "-m", "tinyfaces", "-i", adapter, "-o", tmp_path / "x", "--steps", 1)
    assert code == 1 and "is a lowdim adapter, not a photo" in said
    assert " --model-config " in said, said  # the line runs as printed, as show's use line does


def test_a_merge_whose_recorded_configs_moved_says_which_folder_went(adapter, a1111, tiny_sd, tmp_path, capsys,
                                                                     offline):
    configs = shutil.copytree(tiny_sd, tmp_path / "configs")
    merged = tmp_path / "merged.safetensors"
    code, text = run(capsys, "merge", "-m", a1111, "--model-config", configs, "-a", adapter, "-o", merged)
    assert code == 0, text
    code, text = run(capsys, "show", merged)
    assert code == 0 and squeezed(f"base configs {configs}") in squeezed(text), text
    assert "--model-config" not in printed_command(text, "use it:")
    configs.rename(tmp_path / "moved")
    code, text = run(capsys, "show", merged)
    said = squeezed(text)
    gone = f"{configs} (no model folder there any more: draw with --model-config FOLDER)"
    assert code == 0 and squeezed(gone) in said
    assert printed_command(text, "use it:")[2:4] == [str(merged), "--model-config"], text
    code, text = run(capsys, "generate", "-m", merged, "-p", "a face", *FAST, "-o", tmp_path / "drawn")
    said = " ".join(text.split())
    assert code == 1 and "Traceback" not in said, said
    assert said.endswith(f"the configs folder its merge recorded, {configs}, is no model folder any more (moved?); "
                         f"pass --model-config, a local diffusers folder of the same model"), said  # no network words


def squeezed(table: str) -> str:
    """Show's table as one run of characters, without the box's lines and spaces: a row the console's width
    wrapped (a long path) reads as one."""
    return "".join(table.replace("│", "").split())
