"""A refused ``lowdim train --resume`` over ``--subjects`` whose folders were renamed, added or removed names that once,
in the subjects line: a subject on one side only has no pictures to compare, so it is not said again as reference
images that differ from none. A subject whose pictures changed under the same name is still named."""

from __future__ import annotations

import pytest
import resume_refusals
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

from lowdim_cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGES_LINE = "the reference images"


def _pictures(folder, seed: int) -> None:
    save_images(torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(seed)) * 2 - 1, folder, "x")


@pytest.fixture
def people(tmp_path):
    """--subjects' folder: ann and bob, each with a picture of its own."""
    folder = tmp_path / "people"
    _pictures(folder / "ann", 1)
    _pictures(folder / "bob", 2)
    return folder


def _train(tiny_sd, people, out, *extra: object) -> list[str]:
    return ["train", "-m", str(tiny_sd), "--subjects", str(people), "--out", str(out), "--checkpoint-every", "1",
            *(str(item) for item in extra)]


_refusal = resume_refusals.refusal


def _first_run(tiny_sd, people, out, capsys) -> None:
    assert main(_train(tiny_sd, people, out, "--steps", 1)) == 0
    capsys.readouterr()


def test_a_renamed_subject_is_named_once_by_the_subjects_line(tiny_sd, people, tmp_path, capsys):
    _first_run(tiny_sd, people, tmp_path / "o", capsys)
    (people / "bob").rename(people / "cy")  # the same pictures under another name
    said = _refusal(capsys, _train(tiny_sd, people, tmp_path / "o", "--steps", 2, "--resume"))
    assert "other settings: the subjects (ann, bob there, ann, cy now); resume with" in said
    assert IMAGES_LINE not in said and "None" not in said, said


def test_an_added_subject_is_named_once_by_the_subjects_line(tiny_sd, people, tmp_path, capsys):
    _first_run(tiny_sd, people, tmp_path / "o", capsys)
    _pictures(people / "cy", 3)
    said = _refusal(capsys, _train(tiny_sd, people, tmp_path / "o", "--steps", 2, "--resume"))
    assert "other settings: the subjects (ann, bob there, ann, bob, cy now); resume with" in said
    assert IMAGES_LINE not in said and "None" not in said, said


def test_a_kept_subject_with_other_pictures_is_still_named_beside_a_rename(tiny_sd, people, tmp_path, capsys):
    _first_run(tiny_sd, people, tmp_path / "o", capsys)
    (people / "bob").rename(people / "cy")
    _pictures(people / "ann", 4)  # ann keeps her name, with another picture
    said = _refusal(capsys, _train(tiny_sd, people, tmp_path / "o", "--steps", 2, "--resume"))
    assert ("other settings: the subjects (ann, bob there, ann, cy now); the reference images of subject 'ann' "
            "differ (pixels, crop or size; digest") in said
    assert "subject 'bob'" not in said and "subject 'cy'" not in said and "None" not in said, said


def test_other_pictures_under_the_same_names_are_named_by_subject(tiny_sd, people, tmp_path, capsys):
    _first_run(tiny_sd, people, tmp_path / "o", capsys)
    _pictures(people / "bob", 5)
    said = _refusal(capsys, _train(tiny_sd, people, tmp_path / "o", "--steps", 2, "--resume"))
    assert "other settings: the reference images of subject 'bob' differ (pixels, crop or size; digest" in said
    assert "subject 'ann'" not in said and "the subjects (" not in said, said
    _pictures(people / "bob", 2)  # bob's own picture back: the same run resumes
    assert main(_train(tiny_sd, people, tmp_path / "o", "--steps", 2, "--resume")) == 0
