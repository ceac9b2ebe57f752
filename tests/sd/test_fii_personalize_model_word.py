"""`personalize -m` with a misspelt registered name, or a model path that is not there, is told so first, in the
line `generate -m` gives, before the photo is read or a face searched (review FA, finding 1): not "no face found
... pass --no-crop", advice that hides the real mistake. A real folder or a hub id still goes on to the photo."""

from __future__ import annotations

import pytest
from PIL import Image

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.personalize import PersonalizeJob, personalize

TYPOS = [("tinyfacez", "tinyfaces"), ("SD15", "sd15")]


@pytest.fixture
def blank_photo(tmp_path):
    """A photo with no face in it: with the crop on (a path's default), the face check would refuse it."""
    path = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(path)
    return path


@pytest.fixture
def broken_photo(tmp_path):
    """A file that is no image: reading it at all is one line of its own."""
    path = tmp_path / "face.png"
    path.write_bytes(b"not a png")
    return path


def run_personalize(model, photo, out, capsys) -> tuple[int, str]:
    code = main(["personalize", "-m", str(model), "-i", str(photo), "-o", str(out), "--no-preview"])
    return code, " ".join(capsys.readouterr().err.split())


def generate_says(model, tmp_path, capsys) -> str:
    code = main(["generate", "-m", model, "-p", "a face", "-o", str(tmp_path / "drawn")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1, err
    return err


@pytest.mark.parametrize(("typed", "meant"), TYPOS)
def test_a_typo_is_named_before_the_face_check(typed, meant, blank_photo, tmp_path, capsys):
    code, err = run_personalize(typed, blank_photo, tmp_path / "me", capsys)
    assert code == 1, err
    assert f"unknown model '{typed}'; did you mean {meant}?" in err, err
    assert "no face" not in err and "--no-crop" not in err, err
    assert err == generate_says(typed, tmp_path, capsys)  # one line, word for word the one generate gives
    assert not (tmp_path / "me").exists()


@pytest.mark.parametrize(("typed", "meant"), TYPOS)
def test_a_typo_is_named_before_the_photo_is_read(typed, meant, broken_photo, tmp_path, capsys):
    code, err = run_personalize(typed, broken_photo, tmp_path / "me", capsys)
    assert code == 1 and f"unknown model '{typed}'; did you mean {meant}?" in err, err
    assert "not a readable image" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("missing", ["./no-such-model", "models/sd/no-such.safetensors"])
def test_a_model_path_not_there_is_named_before_the_photo(missing, broken_photo, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_personalize(missing, broken_photo, tmp_path / "me", capsys)
    assert code == 1 and f"{missing}: no such model file or folder" in err, err
    assert err == generate_says(missing, tmp_path, capsys)


@pytest.mark.parametrize("typed", ["tinyfacez", "SD15"])
def test_python_callers_hear_the_typo_first(typed, blank_photo, tmp_path):
    job = PersonalizeJob(model=typed, image=blank_photo, out=tmp_path / "me", preview=False)
    with pytest.raises(LowdimError, match=rf"^unknown model '{typed}'; did you mean "):
        personalize(job, progress=False)
    assert not (tmp_path / "me").exists()


def test_a_real_folder_still_goes_on_to_the_photo(tiny_sd, broken_photo, tmp_path, capsys):
    code, err = run_personalize(tiny_sd, broken_photo, tmp_path / "me", capsys)
    assert code == 1 and "not a readable image" in err, err


def test_a_hub_id_still_goes_on_to_the_photo(broken_photo, tmp_path, capsys):
    """A hub id is only known once looked up (seconds offline): the photo is read first, as before."""
    code, err = run_personalize("someone/some-model", broken_photo, tmp_path / "me", capsys)
    assert code == 1 and "not a readable image" in err, err
