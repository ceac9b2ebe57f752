"""A downloaded results folder is held to its own files: a prompts file listing an image outside the folder (an
absolute path, or one climbing out with ``..``) is refused in one line naming the entry and the file (review
BH11), and a prompts.json nested too deeply is one line, not a RecursionError traceback (review BH1)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from lowdim_cli.main import main
from lowdim_sd.eval.prompts_file import EvalFolderError, read_prompts


def _picture(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (120, 80, 40)).save(path)


@pytest.fixture
def outside(tmp_path):
    """A picture beside the eval folder, not in it."""
    _picture(tmp_path / "elsewhere" / "theirs.png")
    return tmp_path / "elsewhere" / "theirs.png"


def _listed_json(folder, images: list[str]):
    folder.mkdir(exist_ok=True)
    _picture(folder / "000.png")
    (folder / "prompts.json").write_text(json.dumps({"images": [{"image": i, "prompt": "a face"} for i in images]}))
    return folder


@pytest.mark.parametrize("how", ["absolute", "climbing", "climbing-from-a-subfolder"])
def test_a_json_entry_naming_an_image_outside_the_folder_is_refused(tmp_path, outside, how):
    listed = {"absolute": str(outside), "climbing": "../elsewhere/theirs.png",
              "climbing-from-a-subfolder": "sub/../../elsewhere/theirs.png"}[how]
    folder = _listed_json(tmp_path / "ev", ["000.png", listed])
    with pytest.raises(EvalFolderError) as error:
        read_prompts(folder)
    assert str(error.value) == (f"{folder / 'prompts.json'}: image entry 1 ({listed}) is outside {folder}; "
                                f"an eval folder lists only its own images, by their path inside it")


def test_a_csv_row_naming_an_image_outside_the_folder_is_refused(tmp_path, outside):
    folder = tmp_path / "ev"
    folder.mkdir()
    (folder / "prompts.csv").write_text(f"image,prompt\n000.png,a face\n{outside},a face\n")
    with pytest.raises(EvalFolderError, match=r"prompts\.csv: line 3 \(.*theirs\.png\) is outside"):
        read_prompts(folder)


def test_images_inside_the_folder_by_any_path_are_still_read(tmp_path):
    folder = _listed_json(tmp_path / "ev", ["000.png", "sub/001.png", "sub/../002.png", "./003.png"])
    assert [entry.image for entry in read_prompts(folder).entries] == ["000.png", "sub/001.png", "sub/../002.png",
                                                                       "./003.png"]


def test_references_may_still_live_outside_the_folder(tmp_path, outside):
    """Only the images are the folder's own: docs/eval.md's example shares ``../me/face.jpg`` as a reference."""
    folder = _listed_json(tmp_path / "ev", ["000.png"])
    (folder / "prompts.json").write_text(json.dumps({"references": ["../elsewhere/theirs.png"],
                                                     "images": [{"image": "000.png", "prompt": "a face"}]}))
    assert read_prompts(folder).references == ("../elsewhere/theirs.png",)


def test_the_eval_command_refuses_the_outside_image_in_one_line_before_reading_it(tmp_path, outside, capsys):
    folder = _listed_json(tmp_path / "ev", ["000.png", str(outside)])
    assert main(["eval", str(folder), "--metrics", "tinyfaces-style", "-o", str(tmp_path / "out")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"image entry 1 ({outside}) is outside {folder}" in err and "Traceback" not in err


def test_a_prompts_json_nested_too_deeply_is_one_line_naming_the_file(tmp_path):
    folder = tmp_path / "ev"
    folder.mkdir()
    (folder / "prompts.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(EvalFolderError) as error:
        read_prompts(folder)
    assert str(error.value) == f"{folder / 'prompts.json'} is not valid JSON: nested too deeply"
