"""Session 59's mutation audit (FHF): what a user relies on in this session's new code that no test held yet. Each
test calls the function that shows the behaviour (no CLI run, no model load), so the file stays fast."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from lowdim_sd.file_info_parts import FileInfo, json_key

# ------------------------------------------------------------------------------------------- show --json


def _shown(rows: list[tuple[str, str]], use: str = "", values: dict | None = None) -> dict:
    return FileInfo(Path("x.safetensors"), "a file", rows, use, values or {}, type="adapter").as_dict()


def test_json_keys_are_snake_case_whatever_the_labels_case_and_punctuation():
    assert json_key("Trainable Params") == "trainable_params"
    assert json_key("size (MB)") == "size_mb"  # no trailing '_' from the closing bracket


def test_a_grouped_rows_group_is_a_snake_case_key():
    fields = _shown([("last validation: loss", "0.5")])["fields"]
    assert fields == {"last_validation": {"loss": "0.5"}}


def test_a_file_info_without_a_known_type_is_refused():
    with pytest.raises(ValueError, match="nonsense"):
        FileInfo(Path("x"), "a file", type="nonsense")


@pytest.mark.parametrize("row", ["problem", "needs", "damaged", "unfinished", "refused"])
def test_problem_is_the_text_of_any_row_saying_lowdim_would_refuse_the_file(row):
    assert _shown([("rank", "4"), (row, "why it is refused")])["problem"] == "why it is refused"


def test_problem_is_the_value_json_gives_that_row_not_the_tables_cut_text():
    shown = _shown([("problem", "short")], values={"problem": {"layer": "a", "why": "nan"}})
    assert shown["problem"] == {"layer": "a", "why": "nan"} == shown["fields"]["problem"]


def test_a_python_call_use_line_is_a_command():
    call = "lowdim.load_adapter(model, 'x.safetensors')"
    assert _shown([], use=call)["command"] == call
    assert _shown([], use="run it with lowdim generate")["command"] is None


# ------------------------------------------------------------------------------------------- photo files


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + major + b"\0\0\0\0" + b"".join(compatible)
    return (len(body) + 4).to_bytes(4, "big") + body + b"\0" * 32


def test_an_avif_named_only_among_the_compatible_brands_is_an_avif(tmp_path):
    from lowdim_sd.image_names import sniffed_photo_format

    photo = tmp_path / "photo.bin"
    photo.write_bytes(_ftyp(b"mif1", b"mif1", b"miaf", b"avif"))  # libavif's still-image box
    assert sniffed_photo_format(photo) == "AVIF"


def test_an_animated_file_changed_since_is_told_again(tmp_path):
    from lowdim_sd.image_limits import note_frames

    anim = tmp_path / "anim.gif"
    anim.write_bytes(b"GIF89a")
    with warnings.catch_warnings(record=True) as told:
        warnings.simplefilter("always")
        note_frames(anim, 3)
        note_frames(anim, 3)  # the same file opened again: said once
        stat = anim.stat()
        os.utime(anim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # replaced by another
        note_frames(anim, 3)
    assert [str(w.message) for w in told].count(f"image {anim} is animated (3 frames); using its first frame") == 2


def test_a_refusal_sizes_way_forward_is_a_size_within_the_limit(monkeypatch):
    from PIL import Image

    from lowdim_sd.image_limits import too_many_pixels

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_900_000)  # PIL refuses over twice it: 3.8 MP
    line = too_many_pixels(Exception("Image size (9000000 pixels) exceeds limit of 3800000 pixels"))
    assert line == "9 MP, more pixels than PIL opens safely (3 MP): scale it down to 3 MP or less"  # 4 MP is over


# ------------------------------------------------------------------------------------------- faces


def _faces(count: int) -> list:
    from lowdim_sd.faces import Face

    return [Face(10 * i, 0, 10 * i + 8, 8, 1.0) for i in range(count)]


def test_a_face_index_one_past_the_faces_found_is_refused():
    from lowdim_sd.faces import FaceNotFound, pick_face

    assert pick_face(_faces(2), 1, "p.jpg") == _faces(2)[1]
    with pytest.raises(FaceNotFound, match="face index 2 asked for, but p.jpg has 2 face"):
        pick_face(_faces(2), 2, "p.jpg")


def _no_face_line(width: int, height: int) -> str:
    from lowdim_sd.faces import FaceNotFound, pick_face

    with pytest.raises(FaceNotFound) as refused:
        pick_face([], None, "p.jpg", "", (width, height))
    return str(refused.value)


@pytest.mark.parametrize(("width", "height", "times"), [
    (3000, 800, 0.5),  # a panorama strip: its second look is upsampled, so smaller faces are found
    (3000, 1500, 1),  # over the upsampled size, read at full size
    (4032, 3024, 1),  # a 12 MP phone photo
    (8192, 6144, 2),  # read at half size
])
def test_the_no_face_line_gives_the_smallest_face_the_second_look_finds(width, height, times):
    from lowdim_sd.faces import HOG_MIN_FACE

    smallest = round(HOG_MIN_FACE * times)
    assert f"(a {width}x{height} photo, where a face under about {smallest} px wide may be missed" in \
        _no_face_line(width, height)


def test_a_photo_the_first_look_reads_whole_gets_no_small_face_note():
    assert "may be missed" not in _no_face_line(1000, 800)


@pytest.mark.parametrize("model", ["missing-model-folder/", "./missing.safetensors"])
def test_a_model_path_that_is_not_there_is_not_held_up_by_the_face_check(tmp_path, model):
    """The load's line names the missing model: a faceless photo is not refused before it (CI's 2090255)."""
    from PIL import Image

    from lowdim_sd.faces import FaceNotFound
    from lowdim_sd.personalize import PersonalizeJob
    from lowdim_sd.personalize_checks import check_face_found

    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), "white").save(blank)
    check_face_found(PersonalizeJob(model=str(tmp_path / model), image=blank, out=tmp_path / "o"), crop=True)
    with pytest.raises(FaceNotFound):  # the check itself: a model that is there, a photo without a face
        check_face_found(PersonalizeJob(model=str(tmp_path), image=blank, out=tmp_path / "o"), crop=True)


# ------------------------------------------------------------------------------------------- train-hypernet --overwrite


def test_ctrl_c_in_the_fill_puts_the_earlier_run_back(tmp_path):
    from lowdim_sd.hypertrain_resume import earlier_run_set_aside

    (tmp_path / "metrics.jsonl").write_text("earlier\n")
    with pytest.raises(KeyboardInterrupt), earlier_run_set_aside(tmp_path, True):
        (tmp_path / "metrics.jsonl").write_text("this run\n")
        raise KeyboardInterrupt
    assert (tmp_path / "metrics.jsonl").read_text() == "earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def _killed_overwrite(out: Path) -> None:
    aside = out / ".earlier-run-123"
    aside.mkdir(parents=True)
    (aside / "metrics.jsonl").write_text("earlier\n")
    (out / "checkpoints" / "step-2").mkdir(parents=True)  # what the killed run wrote


def test_the_killed_runs_checkpoints_go_when_the_earlier_run_is_put_back(tmp_path):
    from lowdim_sd.hypertrain_resume import put_back_set_aside

    _killed_overwrite(tmp_path)
    with pytest.warns(UserWarning, match="put back the earlier run"):
        put_back_set_aside(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_only_rank_0_puts_the_earlier_run_back(tmp_path, monkeypatch):
    from lowdim_sd.hypertrain_resume import put_back_set_aside

    _killed_overwrite(tmp_path)
    monkeypatch.setenv("RANK", "1")
    put_back_set_aside(tmp_path)
    assert (tmp_path / ".earlier-run-123" / "metrics.jsonl").exists()
