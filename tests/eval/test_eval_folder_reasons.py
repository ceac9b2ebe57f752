"""What an eval folder's notes and errors say about the images left out: which file, and why."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from lowdim_cli.main import main
from lowdim_sd.eval.folder import EvalWarning, ImageSizeWarning, SkippedImageWarning, load_eval_set
from lowdim_sd.eval.prompts_file import EvalFolderError


def _write(folder, images) -> None:
    (folder / "prompts.json").write_text(json.dumps({"images": [{"image": i, "prompt": "a face"} for i in images]}))


def _load(folder, **kwargs):
    """load_eval_set with every warning recorded, as `lowdim eval` records them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_eval_set(folder, **kwargs)
    return data, caught


# -- B3: a folder where no listed image can be used ----------------------------------------------------


@pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")
@pytest.mark.parametrize(("make", "reason"), [
    (lambda path: path.write_text("hi"), "a.png: not a readable image"),
    (lambda path: None, "a.png: no such file"),
    (lambda path: path.write_bytes(b""), "a.png: not a readable image"),
    (lambda path: Image.new("RGB", (8, 8)).save(path), "a.png: 8x8 pixels is too small"),
])
def test_the_error_for_a_one_image_folder_names_the_file_and_why(tmp_path, make, reason):
    make(tmp_path / "a.png")
    _write(tmp_path, ["a.png"])
    with pytest.raises(EvalFolderError) as error:
        load_eval_set(tmp_path)
    assert reason in str(error.value)
    assert "could be read" not in str(error.value)  # wrong for a file that isn't there


def _cut_photo(path, kind: str) -> None:
    """A noisy picture saved as ``kind``, then only the first 60 % of its bytes kept: a partly downloaded file."""
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=kind)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 6 // 10])


@pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")
@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_a_cut_picture_is_left_out_as_cut_short_as_personalize_says_it(tmp_path, kind):
    """Review CZ6: the reason Personalize gives a cut photo (lowdim_sd.images), not the generic one."""
    _cut_photo(tmp_path / "a.png", kind)
    _write(tmp_path, ["a.png"])
    with pytest.raises(EvalFolderError) as error:
        load_eval_set(tmp_path)
    assert "a.png: not a readable image: its data is cut short (a truncated or partly downloaded file)" in str(
        error.value)


@pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")
def test_the_error_for_many_unusable_images_names_the_first_few_and_counts_the_rest(tmp_path):
    names = [f"{i}.png" for i in range(7)]
    _write(tmp_path, names)
    with pytest.raises(EvalFolderError) as error:
        load_eval_set(tmp_path)
    message = str(error.value)
    assert "7" in message and "0.png: no such file" in message and "2.png" in message
    assert "6.png" not in message and "and 4 more" in message


def test_a_prompts_file_listing_no_image_says_so(tmp_path):
    _write(tmp_path, [])
    with pytest.raises(EvalFolderError, match="lists no image"):
        load_eval_set(tmp_path)


@pytest.mark.parametrize("content", [b"hi", None])
def test_the_cli_line_names_the_unusable_image(tmp_path, capsys, content):
    folder = tmp_path / "p"
    folder.mkdir()
    if content is not None:
        (folder / "a.png").write_bytes(content)
    _write(folder, ["a.png"])
    Image.new("RGB", (32, 32)).save(tmp_path / "ref.png")
    code = main(["eval", str(folder), "-r", str(tmp_path / "ref.png"), "--metrics", "tinyfaces-identity",
                 "--no-progress", "--device", "cpu"])
    stderr = " ".join(capsys.readouterr().err.split())
    assert code == 1
    assert ("a.png: not a readable image" if content else "a.png: no such file") in stderr


# -- B5: images in the folder that the prompts file does not list ---------------------------------------


def _unlisted_notes(caught) -> list[str]:
    return [str(w.message) for w in caught if type(w.message) is EvalWarning and "not evaluated" in str(w.message)]


def test_a_listed_image_in_a_subfolder_does_not_hide_a_top_level_one_of_the_same_name(tmp_path, noise):
    (tmp_path / "sub").mkdir()
    noise(1).save(tmp_path / "a.png")
    noise(2).save(tmp_path / "sub" / "a.png")
    _write(tmp_path, ["sub/a.png"])
    data, caught = _load(tmp_path)
    assert [s.name for s in data.samples] == ["sub/a.png"]
    notes = _unlisted_notes(caught)
    assert len(notes) == 1 and notes[0].endswith("not evaluated: a.png")


@pytest.mark.parametrize("listed", ["a.png", "./a.png", "sub/../a.png"])
def test_an_image_listed_by_any_path_to_it_is_not_called_unlisted(tmp_path, noise, listed):
    (tmp_path / "sub").mkdir()
    noise(1).save(tmp_path / "a.png")
    _write(tmp_path, [listed])
    _, caught = _load(tmp_path)
    assert _unlisted_notes(caught) == []


def test_a_reference_in_the_folder_is_not_called_unlisted_but_its_namesake_elsewhere_does_not_count(tmp_path, noise):
    for name in ("000.png", "me.png"):
        noise(1).save(tmp_path / name)
    (tmp_path / "refs").mkdir()
    noise(2).save(tmp_path / "refs" / "other.png")
    noise(3).save(tmp_path / "other.png")
    _write(tmp_path, ["000.png"])
    _, caught = _load(tmp_path, references=[tmp_path / "me.png", tmp_path / "refs" / "other.png"])
    notes = _unlisted_notes(caught)
    assert len(notes) == 1 and notes[0].endswith("not evaluated: other.png")


# -- B6: photos over PIL's pixel limits, and JPEGs decoded at a reduced scale ---------------------------


def _gradient(width: int, height: int) -> Image.Image:
    """A smooth picture: compresses small and fast, unlike noise, at sizes in the tens of megapixels."""
    ramp = np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8)
    return Image.fromarray(np.stack([np.broadcast_to(ramp, (height, width))] * 3, axis=-1))


@pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")
def test_a_large_jpeg_gets_one_note_with_its_file_size_and_no_pil_bomb_warning(tmp_path, monkeypatch):
    _gradient(4200, 4100).save(tmp_path / "big.jpg", quality=80)
    _write(tmp_path, ["big.jpg"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000_000)  # 17 MP is over it, as 100 MP is over PIL's own
    data, caught = _load(tmp_path)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert not [w for w in caught if "decompression bomb" in str(w.message)]
    sizes = [str(w.message) for w in caught if issubclass(w.category, ImageSizeWarning)]
    assert len(sizes) == 1 and "big.jpg is 4200x4100" in sizes[0]  # the file's size, not draft()'s 2100x2050
    assert max(data.samples[0].image.size) == 2048


@pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")
def test_an_image_over_pils_hard_limit_is_skipped_with_its_name_and_size(tmp_path, monkeypatch, noise):
    Image.new("RGB", (2000, 1500)).save(tmp_path / "huge.png")
    noise(1).save(tmp_path / "ok.png")
    _write(tmp_path, ["huge.png", "ok.png"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # 3 MP is over twice it: PIL refuses to open it
    data, caught = _load(tmp_path)
    assert data.skipped == ["huge.png"]
    skips = [str(w.message) for w in caught if issubclass(w.category, SkippedImageWarning)]
    assert len(skips) == 1 and "huge.png: 3 MP" in skips[0] and "2 MP" in skips[0]
    with pytest.raises(EvalFolderError, match=r"reference .*huge.png \(EvalJob\(references=\.\.\.\)\): 3 MP"):
        load_eval_set(tmp_path, references=[tmp_path / "huge.png"])
