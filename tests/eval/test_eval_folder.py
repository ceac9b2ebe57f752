"""The eval folder format: prompts.json / prompts.csv, references, and every kind of bad input."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lowdim_sd.eval.folder import EvalWarning, ImageSizeWarning, SkippedImageWarning, load_eval_set
from lowdim_sd.eval.prompts_file import Entry, EvalFolderError, read_prompts

# Notes about images not named in prompts.json etc.: asserted where they matter, noise elsewhere.
pytestmark = pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")


@pytest.fixture
def folder(tmp_path, noise):
    """Two generated images and a reference folder, with a prompts.json."""
    (tmp_path / "refs").mkdir()
    noise(10).save(tmp_path / "refs" / "me.png")
    noise(11).save(tmp_path / "refs" / "me2.jpg")
    noise(12).save(tmp_path / "other.png")
    for i in range(2):
        noise(i).save(tmp_path / f"{i:03d}.png")
    return tmp_path


def _write(folder, data) -> None:
    (folder / "prompts.json").write_text(json.dumps(data))


def test_json_with_shared_and_own_references_and_a_token(folder):
    _write(folder, {"token": "sks", "references": ["refs"], "images": [
        {"image": "000.png", "prompt": "a sks face at night"},
        {"image": "001.png", "prompt": "a sks face", "references": ["other.png"]}]})
    data = load_eval_set(folder)
    first, second = data.samples
    assert (first.name, first.prompt, first.token) == ("000.png", "a sks face at night", "sks")
    assert len(first.references) == 2
    assert first.clean_prompt() == "a face at night"
    assert len(second.references) == 1 and second.references[0].info["source"].endswith("other.png")
    assert data.skipped == []
    _write(folder, {"references": ["refs"], "images": {"000.png": "a face", "001.png": "a face at night"}})
    shared = load_eval_set(folder).samples
    assert shared[0].references[0] is shared[1].references[0]  # a reference file two images share is opened once


def test_mapping_form_csv_form_and_command_line_references(folder):
    _write(folder, {"images": {"000.png": "a [V] face", "001.png": {"prompt": "a [V] face at night"}}})
    data = load_eval_set(folder, references=[folder / "other.png"])
    assert [s.clean_prompt() for s in data.samples] == ["a face", "a face at night"]
    assert all(len(s.references) == 1 for s in data.samples)
    filled = load_eval_set(folder, token="sks")
    assert filled.samples[0].prompt == "a sks face" and filled.samples[0].clean_prompt() == "a face"

    (folder / "prompts.json").unlink()
    (folder / "prompts.csv").write_text('image,prompt,references\n000.png,"a face, at night",refs/me.png;other.png\n'
                                        "001.png,a face,\n")
    data = load_eval_set(folder, references=[folder / "refs"])
    assert data.samples[0].prompt == "a face, at night" and len(data.samples[0].references) == 2
    assert len(data.samples[1].references) == 2  # falls back to --references (the refs folder)
    assert data.samples[1].references[0] is data.samples[0].references[0]  # opened once, for both


def test_generate_output_is_an_eval_folder(tmp_path, noise):
    from lowdim_sd.generate import Generated, save_generated

    results = [Generated("a [V] face", 0, noise(0, 32)), Generated("a [V] face at night", 1, noise(1, 32))]
    paths, _ = save_generated(results, tmp_path)
    with pytest.warns(EvalWarning, match="no usable reference"):
        data = load_eval_set(tmp_path)  # grid.png is not taken for an unlisted image
    assert [s.name for s in data.samples] == [p.name for p in paths]
    assert data.samples[1].clean_prompt() == "a face at night"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", r"not valid JSON: .* line 1, column 2"),
    ('{"prompts": []}', r'must be an object with an "images" list'),
    ('{"images": 3}', r'"images" must be a list or an object'),
    ('{"images": [{"prompt": "a face"}]}', r'image entry 0 has no "image"'),
    ('{"images": [{"image": "000.png"}]}', r'image entry 0 \(000.png\) has no "prompt"'),
    ('{"images": ["000.png"]}', r"image entry 0 must be an object"),
    ('{"token": 3, "images": []}', r'"token" must be a string'),
    ('{"references": [1], "images": []}', r"references must be a list of paths"),
])
def test_a_malformed_prompts_json_names_the_file_and_the_problem(folder, content, message):
    (folder / "prompts.json").write_text(content)
    with pytest.raises(EvalFolderError, match=message):
        read_prompts(folder)


def test_missing_or_malformed_folder_and_csv(tmp_path):
    with pytest.raises(EvalFolderError, match="has no prompts.json or prompts.csv"):
        read_prompts(tmp_path)
    with pytest.raises(EvalFolderError, match="eval folder .* not found"):
        read_prompts(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(EvalFolderError, match="is not a folder"):
        read_prompts(tmp_path / "file.png")
    (tmp_path / "prompts.csv").write_text("file,text\na.png,a face\n")
    with pytest.raises(EvalFolderError, match="needs a header line 'image,prompt'"):
        read_prompts(tmp_path)
    (tmp_path / "prompts.csv").write_bytes(b"image,prompt\n\xff\xfe.png,x\n")
    with pytest.raises(EvalFolderError, match="not a readable CSV"):
        read_prompts(tmp_path)


def test_bad_images_are_skipped_with_a_named_warning_and_the_rest_run(folder, noise):
    (folder / "notes.txt").write_text("not an image")
    noise(5, 8).save(folder / "tiny.png")
    noise(6, 2100).save(folder / "huge.png")
    noise(7).save(folder / "unlisted.png")
    _write(folder, {"references": ["refs", "refs/gone.png", "notes.txt"], "images": [
        {"image": "000.png", "prompt": "a"}, {"image": "notes.txt", "prompt": "b"},
        {"image": "tiny.png", "prompt": "c"}, {"image": "missing.png", "prompt": "d"},
        {"image": "huge.png", "prompt": "e"}]})
    with pytest.warns(Warning) as caught:
        data = load_eval_set(folder)
    messages = {type(w.message): [] for w in caught}
    for w in caught:
        messages[type(w.message)].append(str(w.message))
    skipped = " | ".join(messages[SkippedImageWarning])
    assert "generated image" in skipped and "notes.txt: not a readable image" in skipped
    assert "tiny.png: 8x8 pixels is too small" in skipped and "missing.png: no such file" in skipped
    assert "reference" in skipped and "gone.png: no such file" in skipped
    assert any("huge.png is 2100x2100" in m for m in messages[ImageSizeWarning])
    assert any("unlisted.png" in m and "not evaluated" in m for m in messages[EvalWarning])
    assert [s.name for s in data.samples] == ["000.png", "huge.png"]
    assert max(data.samples[1].image.size) == 2048
    assert data.skipped == ["notes.txt", "tiny.png", "missing.png"]
    assert len(data.samples[0].references) == 2  # the two readable files in refs/


def test_a_folder_with_no_usable_image_is_an_error(folder):
    _write(folder, {"images": [{"image": "missing.png", "prompt": "a"}]})
    with pytest.warns(SkippedImageWarning), pytest.raises(EvalFolderError, match="no usable generated image"):
        load_eval_set(folder)


def test_crop_references_falls_back_to_the_whole_image_without_a_face(folder):
    pytest.importorskip("dlib")
    from lowdim_sd.faces import NoFaceWarning

    _write(folder, {"references": ["other.png"], "images": [{"image": "000.png", "prompt": "a"}]})
    with pytest.warns(NoFaceWarning, match="no face found in .*other.png.*uncropped"):
        data = load_eval_set(folder, crop=True, crop_size=64)
    assert data.samples[0].references[0].size == Image.open(folder / "other.png").size


def test_wide_and_transparent_pictures_are_read_as_what_they_show(tmp_path):
    gray = np.tile(np.linspace(0, 255, 32).round().astype(np.uint8), (32, 1))
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    # Black ink whose opacity makes the gray: over white it is the same picture, over black all black.
    Image.fromarray(np.dstack([np.zeros((32, 32, 3), np.uint8), 255 - gray])).save(tmp_path / "alpha.png")
    Image.fromarray(gray.astype(np.float32) / 255).save(tmp_path / "float.tif")
    names = ["rgb.png", "grey16.png", "alpha.png", "float.tif"]
    assert [Image.open(tmp_path / n).mode for n in names] == ["RGB", "I;16", "RGBA", "F"]
    _write(tmp_path, {"images": {name: "a face" for name in names}})
    pixels = {s.name: np.asarray(s.image, dtype=int) for s in load_eval_set(tmp_path).samples}
    assert all(p.shape == (32, 32, 3) for p in pixels.values())
    for name in names[1:]:
        assert np.abs(pixels[name] - pixels["rgb.png"]).max() <= 1, name


def test_prompts_files_with_a_utf8_byte_order_mark_are_read(tmp_path):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "prompts.csv").write_bytes(bom + "image,prompt\n000.png,a café\n".encode())
    assert read_prompts(tmp_path).entries == [Entry("000.png", "a café")]
    (tmp_path / "prompts.csv").unlink()
    (tmp_path / "prompts.json").write_bytes(bom + json.dumps({"images": {"000.png": "a face"}}).encode())
    assert read_prompts(tmp_path).entries == [Entry("000.png", "a face")]


def test_a_bad_csv_row_is_named_by_the_line_it_starts_on(tmp_path):
    (tmp_path / "prompts.csv").write_text('image,prompt\n\n000.png,"a face\nat night\n"\n\n'
                                          "001.png,a face\n\n,a face with no image\n")
    with pytest.raises(EvalFolderError, match=r"prompts.csv, line 9: needs an image file name"):
        read_prompts(tmp_path)


_PROMPT = st.text(st.sampled_from('ab ,"\né'), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_PROMPT, st.integers(0, 2)), max_size=6), blank_after_header=st.integers(0, 2),
       bad_prompt=_PROMPT)
def test_csv_line_numbers_count_blank_lines_and_multiline_prompts(tmp_path, rows, blank_after_header, bad_prompt):
    text = io.StringIO()
    text.write("image,prompt\n" + "\n" * blank_after_header)
    writer = csv.writer(text, lineterminator="\n")
    for index, (prompt, blanks) in enumerate(rows):
        writer.writerow([f"{index}.png", prompt])
        text.write("\n" * blanks)
    line = text.getvalue().count("\n") + 1  # the bad row's first line, even if its prompt spans several
    writer.writerow(["", bad_prompt])
    (tmp_path / "prompts.csv").write_text(text.getvalue(), encoding="utf-8")
    with pytest.raises(EvalFolderError, match=rf"prompts.csv, line {line}: needs an image file name"):
        read_prompts(tmp_path)


def test_an_image_listed_twice_is_refused_naming_both_entries(tmp_path):
    _write(tmp_path, {"images": [{"image": "000.png", "prompt": "a face"}, {"image": "001.png", "prompt": "b"},
                                 {"image": "./000.png", "prompt": "a face at night"}]})
    with pytest.raises(EvalFolderError, match=r"prompts.json: 000.png is listed twice, as image entry 0 and "
                                              r"image entry 2"):
        read_prompts(tmp_path)
    (tmp_path / "prompts.json").unlink()
    (tmp_path / "prompts.csv").write_text('image,prompt\n000.png,"a\nface"\n\n001.png,b\n000.png,c\n')
    with pytest.raises(EvalFolderError, match=r"prompts.csv: 000.png is listed twice, as line 2 and line 6"):
        read_prompts(tmp_path)


def test_an_image_keyed_twice_in_the_mapping_form_is_refused_not_dropped(tmp_path):
    (tmp_path / "prompts.json").write_text('{"images": {"000.png": "a face", "000.png": "a face at night"}}')
    with pytest.raises(EvalFolderError, match=r'prompts.json: "000.png" is a key twice in one object'):
        read_prompts(tmp_path)
    (tmp_path / "prompts.json").write_text('{"images": {"000.png": "a face", "001.png": "a face at night"}}')
    assert [entry.image for entry in read_prompts(tmp_path).entries] == ["000.png", "001.png"]
