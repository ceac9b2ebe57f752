"""Hidden files in eval's folders (a Mac's ._NAME AppleDouble, .hidden.jpg) are not pictures: eval reads a folder as
personalize does (lowdim_sd.images.collect_images), so a folder copied from a Mac works."""

from __future__ import annotations

import json
import warnings

import pytest

from lowdim_cli.main import main
from lowdim_sd.eval.folder import load_eval_set
from lowdim_sd.eval.prompts_file import EvalFolderError

# What macOS writes next to every file it copies to a foreign disk: not a picture, whatever its name says.
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "


@pytest.fixture
def mac_folder(tmp_path, noise):
    """An eval folder and a reference folder, each with ._NAME files beside its pictures and one hidden picture."""
    gen, refs = tmp_path / "gen", tmp_path / "refs"
    gen.mkdir()
    refs.mkdir()
    noise(0).save(gen / "000.png")
    (gen / "._000.png").write_bytes(APPLE_DOUBLE)
    (gen / "prompts.json").write_text(json.dumps({"images": [{"image": "000.png", "prompt": "a [V] face"}]}))
    noise(1).save(refs / "me.png")
    (refs / "._me.png").write_bytes(APPLE_DOUBLE)
    noise(2).save(refs / ".hidden.png")  # a real picture, but hidden: Finder and Explorer do not show it
    return gen, refs


def test_hidden_files_in_a_references_folder_are_not_references(mac_folder):
    gen, refs = mac_folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (sample,) = load_eval_set(gen, references=[refs]).samples
    assert [image.info.get("source") for image in sample.references] == [str(refs / "me.png")]
    assert not [w for w in caught if "._" in str(w.message) or ".hidden" in str(w.message)]


def test_a_folder_of_only_hidden_pictures_holds_no_references(mac_folder):
    gen, refs = mac_folder
    (refs / "me.png").unlink()
    with pytest.raises(EvalFolderError, match="holds no images"):
        load_eval_set(gen, references=[refs])


def test_a_references_folder_copied_from_a_mac_scores_from_the_command_line(mac_folder, capsys):
    gen, refs = mac_folder
    code = main(["eval", str(gen), "-r", str(refs), "--metrics", "tinyfaces-identity", "--no-progress",
                 "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    said = " ".join((captured.out + captured.err).split())
    assert "._me.png" not in said and "._000.png" not in said and ".hidden.png" not in said
