"""A bad finetune value is told before an earlier run's folder is: one fix, not a rerun with --overwrite only to
hear of the value next."""

from __future__ import annotations

import shutil

import pytest

from lowdim_cli.main import main


@pytest.mark.parametrize(("args", "said"), [
    (["--lr", "-1"], "--lr must be a positive number, got -1.0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--cuda-graphs"], "--cuda-graphs needs a CUDA GPU"),
    (["--resolution", "100"], "--resolution must be a positive multiple of 8"),  # CW2 K06: else a run at 100
    (["--crop-margin", "inf"], "--crop-margin must be a finite number from 0 to 3 (room around the face, a fraction "
                               "of its width; at 3 the face is a seventh of the crop's width), got inf"),  # CW2 K04
])
def test_a_bad_value_comes_before_the_taken_folder(tiny_sd, face, tmp_path, capsys, args, said):
    out = tmp_path / "me"
    out.mkdir()
    (out / "adapter.safetensors").write_bytes(b"an earlier run's")
    code = main(["personalize", "-m", str(tiny_sd), "-i", str(face), "-o", str(out), "--no-preview", *args])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and said in err and "--overwrite" not in err, err
    assert (out / "adapter.safetensors").read_bytes() == b"an earlier run's"


def test_a_broken_photo_comes_before_the_taken_folder(tiny_sd, tmp_path, capsys):
    """The photo is opened by the checks run before the output folder is looked at (CW2 K13): a photo that is no
    image costs neither a model load nor an --overwrite rerun."""
    out, broken = tmp_path / "me", tmp_path / "face.png"
    out.mkdir()
    (out / "adapter.safetensors").write_bytes(b"an earlier run's")
    broken.write_bytes(b"not a png")
    code = main(["personalize", "-m", str(tiny_sd), "-i", str(broken), "-o", str(out), "--no-preview"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "not a readable image" in err and "--overwrite" not in err and "Traceback" not in err, err
    assert (out / "adapter.safetensors").read_bytes() == b"an earlier run's"


@pytest.mark.parametrize(("args", "said"), [
    (["--cuda-graphs"], "--cuda-graphs needs a CUDA GPU"),
    (["--lr", "-1"], "--lr must be a positive number, got -1.0"),
])
def test_train_tells_a_bad_value_before_the_taken_folder_too(tiny_sd, face, tmp_path, capsys, args, said):
    photos, out = tmp_path / "photos", tmp_path / "me"
    photos.mkdir()
    shutil.copy(face, photos)
    out.mkdir()
    (out / "adapter.safetensors").write_bytes(b"an earlier run's")
    code = main(["train", "-m", str(tiny_sd), "-i", str(photos), "-o", str(out), "--steps", "1", *args])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and said in err and "--overwrite" not in err, err
    assert (out / "adapter.safetensors").read_bytes() == b"an earlier run's"
