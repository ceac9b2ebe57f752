"""A folder of reference pictures as a user fills it: pictures in sub-folders are skipped with one warning that
names them and says what to do, many small pictures give one upscaling warning, and every unusable file of a
run is named in one error, not one per run."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from PIL import Image

from lowdim_sd.images import ImageError, collect_images, load_references
from lowdim_sd.workflows import TrainJob, subject_sets

SIZE = 32


def picture(path: Path, width: int = 40, height: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height or width), (90, 120, 150)).save(path)
    return path


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff not a jpeg at all")
    return path


def messages(record) -> list[str]:
    return [str(item.message) for item in record]


# ------------------------------------------------------------------------------------------- sub-folders


def test_sub_folders_holding_pictures_are_named_once_with_their_counts(tmp_path):
    picture(tmp_path / "a.png")
    picture(tmp_path / "sub" / "nested.jpg")
    picture(tmp_path / "sub" / "deeper" / "deep.JPEG")
    picture(tmp_path / "more" / "one.png")
    (tmp_path / "empty").mkdir()
    picture(tmp_path / ".thumbnails" / "t.png")  # hidden: a viewer's, never the user's
    with pytest.warns(UserWarning) as record:
        found = collect_images(tmp_path)
    assert found == [tmp_path / "a.png"]
    [line] = [m for m in messages(record) if "sub-folder" in m]
    assert "more (1 image)" in line and "sub (2 images)" in line
    assert "empty" not in line and ".thumbnails" not in line and "\n" not in line
    assert "move" in line


def test_train_images_folder_says_subjects_or_move_them_up(tmp_path):
    picture(tmp_path / "me" / "a.png")
    picture(tmp_path / "me" / "holiday" / "b.png")
    job = TrainJob(model="tinyfaces", images=[tmp_path / "me"], out=tmp_path / "out")
    with pytest.warns(UserWarning) as record:
        names, subjects = subject_sets(job, SIZE)
    [line] = [m for m in messages(record) if "sub-folder" in m]
    assert "holiday (1 image)" in line and "TrainJob(subjects=" in line and "move" in line
    assert subjects[0].images.shape[0] == 1


def test_a_folder_with_pictures_only_in_sub_folders_says_where_they_are(tmp_path):
    picture(tmp_path / "2023" / "a.png")
    with pytest.raises(ImageError, match=r"holds no image files.*2023 \(1 image\)") as caught:
        collect_images(tmp_path)
    assert "\n" not in str(caught.value)


def test_no_sub_folder_no_warning(tmp_path):
    picture(tmp_path / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert collect_images(tmp_path) == [tmp_path / "a.png"]


# -------------------------------------------------------------------------------------------- upscaling


def test_many_small_pictures_give_one_upscaling_warning(tmp_path):
    for index in range(12):
        picture(tmp_path / f"{index:03d}.png", 20 + index % 3, 30)
    picture(tmp_path / "big.png", 64)
    with pytest.warns(UserWarning) as record:
        batch = load_references(tmp_path, SIZE)
    assert batch.shape == (13, 3, SIZE, SIZE)
    [line] = messages(record)
    assert "12 of 13" in line and "20x30" in line and "000.png" in line and "more" in line
    assert "big.png" not in line


def test_one_small_picture_is_named_with_its_size(tmp_path):
    picture(tmp_path / "small.png", 20, 24)
    with pytest.warns(UserWarning, match=r"small\.png.*20x24"):
        load_references(tmp_path, SIZE)


# ---------------------------------------------------------------------------------------- unusable files


def test_every_unusable_file_is_named_in_one_error(tmp_path):
    picture(tmp_path / "good.png")
    corrupt(tmp_path / "corrupt.jpg")
    picture(tmp_path / "thin.png", 1, 64)
    with pytest.raises(ImageError) as caught:
        load_references(tmp_path, SIZE)
    message = str(caught.value)
    assert "corrupt.jpg" in message and "thin.png" in message and "good.png" not in message
    assert "2 reference images" in message and "\n" not in message


def test_one_unusable_file_keeps_its_own_line(tmp_path):
    picture(tmp_path / "good.png")
    corrupt(tmp_path / "corrupt.jpg")
    with pytest.raises(ImageError, match=r"^file .*corrupt\.jpg is not a readable image"):
        load_references(tmp_path, SIZE)


def test_subjects_report_the_unusable_files_of_every_subject_at_once(tmp_path):
    picture(tmp_path / "people" / "ann" / "a.png")
    corrupt(tmp_path / "people" / "ann" / "bad.jpg")
    picture(tmp_path / "people" / "bob" / "b.png", 20)  # small: upscaled, named in the one warning
    picture(tmp_path / "people" / "bob" / "thin.png", 2, 40)
    job = TrainJob(model="tinyfaces", subjects=tmp_path / "people", out=tmp_path / "out")
    with pytest.raises(ImageError) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        subject_sets(job, SIZE)
    assert "bad.jpg" in str(caught.value) and "thin.png" in str(caught.value)
