"""A hypernetwork file records the side (and crop) of the pictures its targets were precomputed at, and a run at
another side says so in one line: not refused, as the paper's SD1.5 recipe precomputes at 256 px and personalizes
at 512. The tiny model draws 16 px."""

from __future__ import annotations

import re
import warnings

import pytest
from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it

from lowdim.hyper.storage import read_hypernet
from lowdim_cli.main import main

SAID = "learned from weights precomputed at 32 px; this run is at 16 px"


@pytest.fixture(scope="module")
def trained(tiny_sd, tmp_path_factory):
    """A hypernetwork trained (one step) on weights precomputed at 32 px, with the face crop off."""
    import torch
    from images_for_tests import save_images

    from lowdim_sd.hypertrain import train_hypernet
    from lowdim_sd.precompute import PrecomputeJob, precompute
    from lowdim_sd.train import TrainConfig

    folder = tmp_path_factory.mktemp("at32")
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    save_images(images, folder / "faces", "person")
    precompute(PrecomputeJob(model=str(tiny_sd), identities=folder / "faces", out=folder / "w", resolution=32,
                             config=TrainConfig(steps=1), batch_subjects=3, crop=False), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_hypernet(job(folder / "w", folder / "h", steps=1, val_identities=1), progress=False).path


def test_the_file_records_the_side_and_crop_of_its_targets(trained):
    metadata = read_hypernet(trained).metadata
    assert (metadata["resolution"], metadata["crop"]) == (32, False)
    assert "crop_margin" not in metadata  # no crop, no margin


def personalize(tiny_sd, face, out, hypernet, *flags) -> int:
    return main(["personalize", "-m", str(tiny_sd), "-i", str(face), "--hypernet", str(hypernet), "--only-hyper",
                 "--no-preview", "--no-crop", "-o", str(out), *flags])


def test_personalize_at_another_side_warns_once_and_runs(tiny_sd, face, tmp_path, trained, capsys):
    assert personalize(tiny_sd, face, tmp_path / "me", trained) == 0
    err = capsys.readouterr().err
    assert err.count(SAID) == 1, err
    assert (tmp_path / "me" / "adapter.safetensors").is_file()


def test_personalize_at_the_side_of_its_targets_says_nothing(tiny_sd, face, tmp_path, trained, capsys):
    assert personalize(tiny_sd, face, tmp_path / "me", trained, "--resolution", "32") == 0
    assert "precomputed at" not in capsys.readouterr().err


def test_an_asked_side_is_the_one_compared(tiny_sd, face, tmp_path, make_hypernet, capsys):
    hypernet = make_hypernet(1, resolution=16)  # the tiny model's own side: --resolution 32 is another
    assert personalize(tiny_sd, face, tmp_path / "me", hypernet, "--resolution", "32") == 0
    assert "precomputed at 16 px; this run is at 32 px" in capsys.readouterr().err


def test_a_file_without_the_record_says_nothing(tiny_sd, face, tmp_path, make_hypernet, capsys):
    assert personalize(tiny_sd, face, tmp_path / "me", make_hypernet(1), "--resolution", "32") == 0
    assert "precomputed at" not in capsys.readouterr().err


@pytest.mark.parametrize("config_at_hand", [False, True], ids=["side-read-after-the-load", "side-read-before"])
def test_another_side_is_said_once_whether_or_not_the_model_config_was_at_hand(
        tiny_sd, face, tmp_path, make_hypernet, monkeypatch, capsys, config_at_hand):
    """A single-file checkpoint or a hub model not downloaded yet has no config to read before the load: the
    loaded model's side is compared instead, and a side told before the load is not told again after it."""
    from lowdim_sd import personalize_hypernet

    if not config_at_hand:
        monkeypatch.setattr(personalize_hypernet, "model_side", lambda model: None)
    assert personalize(tiny_sd, face, tmp_path / "me", make_hypernet(1, resolution=32)) == 0
    err = capsys.readouterr().err
    assert err.count(SAID) == 1, err


def test_the_model_side_read_after_the_load_says_nothing_when_it_is_the_targets(
        tiny_sd, face, tmp_path, make_hypernet, monkeypatch, capsys):
    from lowdim_sd import personalize_hypernet

    monkeypatch.setattr(personalize_hypernet, "model_side", lambda model: None)
    assert personalize(tiny_sd, face, tmp_path / "me", make_hypernet(1, resolution=16)) == 0  # the tiny model's
    assert "precomputed at" not in capsys.readouterr().err


def test_show_lists_the_recorded_side(trained, capsys):
    assert main(["show", str(trained)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"training: resolution\W+32\b", out), out


@pytest.mark.parametrize("config_at_hand", [False, True], ids=["side-read-after-the-load", "side-read-before"])
def test_bench_quality_hypernetwork_rows_warn(tiny_sd, identities, tmp_path, quick_methods, make_hypernet,
                                              monkeypatch, config_at_hand):
    from lowdim_sd import personalize_hypernet
    from lowdim_sd.bench.quality import QualityJob, run_quality

    if not config_at_hand:  # a single-file checkpoint: the bench's loaded model tells the side
        monkeypatch.setattr(personalize_hypernet, "model_side", lambda model: None)
    hypernet = make_hypernet(1, resolution=32)
    quality = QualityJob(identities=identities, model=str(tiny_sd), out=tmp_path / "bench", metrics=[],
                         prompts=["a [V] face"], sample_steps=2, methods=["only-hyper"], limit=1, hypernet=hypernet)
    with pytest.warns(UserWarning, match=SAID):
        run_quality(quality)
