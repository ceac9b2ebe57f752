"""A ``lowdim train --resume`` with other options than the checkpoint's run is refused in the command's own words:
each difference by the flag the user typed (``--lr``, ``--no-augment``, ``--set rank``, ``--init``), not by the
TrainConfig field or the adapter signature's key it is recorded under; from Python, ``TrainJob(...)``'s fields
(``lowdim.option_words``)."""

from __future__ import annotations

import re

import pytest
import resume_refusals
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim_cli.main import main
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

pytestmark = pytest.mark.usefixtures("one_thread")

# What a CLI user never typed: TrainConfig fields, the adapter signature's keys, Python's spellings.
FIELD_WORDS = ("learning_rate", "mixed_precision", "gradient_checkpointing", "space_config", "layer_set",
               "frozen_part", "components", "trainable", "True", "False", "None")


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refs") / "me"
    save_images(torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1, folder, "me")
    return folder


def _train(tiny_sd, refs, out, *extra: object) -> list[str]:
    return ["train", "-m", str(tiny_sd), "-i", str(refs), "--out", str(out), "--checkpoint-every", "1",
            *(str(item) for item in extra)]


_refusal = resume_refusals.refusal


def _assert_flags_exist(capsys, said: str) -> None:
    """Every flag the refusal names is one `lowdim train` takes."""
    assert main(["train", "--help"]) == 0
    known = set(re.findall(r"--[a-z][a-z-]+", capsys.readouterr().out))
    assert set(re.findall(r"--[a-z][a-z-]+", said)) <= known, said


def test_other_options_are_named_by_the_flags_typed(tiny_sd, refs, tmp_path, capsys):
    assert main(_train(tiny_sd, refs, tmp_path / "o", "--steps", 1)) == 0
    capsys.readouterr()
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "o", "--steps", 2, "--resume", "--lr", "1e-2",
                                   "--no-augment", "--mixed-precision", "bf16", "--gradient-checkpointing",
                                   "--layers", "unet", "--set", "rank=2", "--dropout", "0.1", "--seed", "3"))
    # --gradient-checkpointing is passed too, and not named: a resume may change it (the same steps)
    assert ("checkpoint of a run with other settings: --augment there, --no-augment now; --lr (0.002 there, 0.01 "
            "now); "
            "--mixed-precision (no there, bf16 now); --seed (0 there, 3 now); --dropout (0.0 there, 0.1 now); "
            "--layers (unet+text there, unet now); --set rank (1 there, 2 now); resume with the same options, or "
            "choose another --out") in said
    assert not [word for word in FIELD_WORDS if word in said], said
    _assert_flags_exist(capsys, said)
    assert not (tmp_path / "o" / "checkpoints" / "step-000002").exists()  # refused before a step was taken


@pytest.mark.parametrize("space", ["lora", "stack"])  # a stack from scratch has a frozen part of its own
def test_another_space_is_named_once_not_with_its_whole_config(tiny_sd, refs, tmp_path, capsys, space):
    assert main(_train(tiny_sd, refs, tmp_path / "o", "--steps", 1)) == 0
    capsys.readouterr()
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "o", "--steps", 2, "--resume", "--space", space))
    # --lr left out: its rate is the space's default, which fixing --space fixes too (not a second change)
    assert f"other settings: --space (lidb there, {space} now); resume with" in said
    assert "--set" not in said and "{" not in said and "frozen" not in said


def test_a_rate_left_out_follows_the_mode_and_is_not_named(tiny_sd, refs, tmp_path, capsys):
    assert main(_train(tiny_sd, refs, tmp_path / "a", "--steps", 1)) == 0
    assert main(_train(tiny_sd, refs, tmp_path / "full", "--steps", 1, "--full")) == 0
    capsys.readouterr()
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "a", "--steps", 2, "--resume", "--full"))
    assert "other settings: no --full there, --full now; resume with" in said
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "full", "--steps", 2, "--resume"))
    assert "other settings: --full there, no --full now; resume with" in said
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "a", "--steps", 2, "--resume", "--init",
                                   tmp_path / "a" / "adapter.safetensors"))
    assert "other settings: no --init there, --init now; resume with" in said


def test_a_rate_typed_or_recorded_typed_is_named_beside_the_mode(tiny_sd, refs, tmp_path, capsys):
    assert main(_train(tiny_sd, refs, tmp_path / "a", "--steps", 1)) == 0
    assert main(_train(tiny_sd, refs, tmp_path / "typed", "--steps", 1, "--lr", "1e-2")) == 0
    capsys.readouterr()
    # typed now, at lora's own default: the user gave it, so it is named, whatever its value
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "a", "--steps", 2, "--resume", "--space", "lora",
                                   "--lr", "1e-4"))
    assert "other settings: --lr (0.002 there, 0.0001 now); --space (lidb there, lora now); resume with" in said
    # left out now, typed there: going back to lidb would still leave the rate to fix
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "typed", "--steps", 2, "--resume", "--space", "lora"))
    assert "other settings: --lr (0.01 there, 0.0001 now); --space (lidb there, lora now); resume with" in said


def test_every_difference_is_named_past_eight_counted(tiny_sd, refs, tmp_path, capsys):
    assert main(_train(tiny_sd, refs, tmp_path / "o", "--steps", 1)) == 0
    capsys.readouterr()
    changes = ("--lr", "1e-2", "--no-augment", "--mixed-precision", "bf16", "--seed", 3, "--dropout", 0.1,
               "--layers", "unet", "--set", "rank=2", "--batch-size", 2)
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "o", "--steps", 2, "--resume", *changes))
    assert ("other settings: --augment there, --no-augment now; --batch-size (1 there, 2 now); --lr (0.002 there, "
            "0.01 now); --mixed-precision (no there, bf16 now); --seed (0 there, 3 now); --dropout (0.0 there, 0.1 "
            "now); --layers (unet+text there, unet now); --set rank (1 there, 2 now); resume with") in said
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "o", "--steps", 2, "--resume", *changes,
                                   "--grad-accum", 2, "--prompt", "a [V] person", "--token", "zqx"))
    assert said.count(" there") == 8 and "; and 3 more; resume with" in said, said


def test_other_subjects_are_named_by_their_folders(tiny_sd, refs, tmp_path, capsys):
    people = tmp_path / "people"
    for name in ("ann", "bob"):
        save_images(torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(len(name))), people / name, "x")
    args = ["train", "-m", str(tiny_sd), "--subjects", str(people), "--out", str(tmp_path / "o"), "--checkpoint-every",
            "1"]
    assert main([*args, "--steps", "1"]) == 0
    capsys.readouterr()
    (people / "bob").rename(people / "cy")
    said = _refusal(capsys, [*args, "--steps", "2", "--resume"])
    assert "other settings: the subjects (ann, bob there, ann, cy now);" in said
    assert "['" not in said


def test_full_and_init_runs_are_named_by_their_mode_flags(tiny_sd, refs, tmp_path, capsys):
    assert main(_train(tiny_sd, refs, tmp_path / "a", "--steps", 1)) == 0
    assert main(_train(tiny_sd, refs, tmp_path / "b", "--steps", 1, "--seed", 5)) == 0
    assert main(_train(tiny_sd, refs, tmp_path / "full", "--steps", 1, "--full")) == 0
    first, other = tmp_path / "a" / "adapter.safetensors", tmp_path / "b" / "adapter.safetensors"
    assert main(_train(tiny_sd, refs, tmp_path / "init", "--steps", 1, "--init", first)) == 0
    capsys.readouterr()

    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "full", "--steps", 2, "--resume", "--full",
                                   "--train-text-encoder"))
    assert "other settings: no --train-text-encoder there, --train-text-encoder now; resume with" in said
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "full", "--steps", 2, "--resume"))
    assert "--full there, no --full now" in said and "--space" not in said and "--layers" not in said

    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "init", "--steps", 2, "--resume", "--init", first,
                                   "--rank", 2, "--no-merge-frozen"))
    assert "other settings: --rank (4 there, 2 now); --merge-frozen there, --no-merge-frozen now;" in said
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "init", "--steps", 2, "--resume", "--init", other))
    assert re.search(r"other settings: --init \(another initial adapter: frozen part \w+ there, \w+ now\);", said)
    assert "--seed" not in said  # the initial adapter's own seed, not the run's: --init says it
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "init", "--steps", 2, "--resume"))
    assert "--init there, no --init now" in said and "--space" not in said and "--set" not in said
    assert not [word for word in FIELD_WORDS if word in said], said


def test_from_python_the_refusal_names_the_fields_the_user_set(tiny_sd, refs, tmp_path):
    def job(**changes) -> TrainJob:
        return TrainJob(model=str(tiny_sd), images=[refs], out=tmp_path / "p", config=TrainConfig(
            steps=changes.pop("steps", 1), checkpoint_every=1, augment=changes.pop("augment", True),
            seed=changes.pop("seed", 0)), **changes)

    run_train(job(), progress=False)
    with pytest.raises(lowdim.LowdimError) as refused:
        run_train(job(steps=2, resume=True, learning_rate=1e-2, augment=False, space_options={"rank": 2},
                      layers="unet", seed=3), progress=False)
    said = str(refused.value)
    assert ("other settings: TrainConfig(augment=...) (on there, off now); TrainJob(learning_rate=...) (0.002 there, "
            "0.01 now); TrainConfig(seed=...) (0 there, 3 now); TrainJob(layers=...) ('unet+text' there, 'unet' now); "
            "TrainJob(space_options=...) rank (1 there, 2 now); resume with the same settings, or choose another "
            "out") in said, said
    raw = ("learning_rate (", "space_config", "layer_set", "trainable", "--", "{")
    assert not [word for word in raw if word in said], said
    with pytest.raises(lowdim.LowdimError) as refused:  # another space: its own line, not its whole config
        run_train(job(steps=2, resume=True, space="lora"), progress=False)
    said = str(refused.value)
    # from Python nobody says whether the rate was typed: it is named, as the CLI names a typed --lr
    assert ("other settings: TrainJob(learning_rate=...) (0.002 there, 0.0001 now); TrainJob(space=...) ('lidb' "
            "there, 'lora' now); resume with") in said, said
    assert "space_options" not in said and "{" not in said


def test_from_python_a_full_or_init_run_is_named_by_its_field(tiny_sd, refs, tmp_path):
    def job(**changes) -> TrainJob:
        return TrainJob(model=str(tiny_sd), images=[refs], config=TrainConfig(steps=changes.pop("steps", 1),
                                                                             checkpoint_every=1), **changes)

    run_train(job(out=tmp_path / "a"), progress=False)
    run_train(job(out=tmp_path / "init", initial=tmp_path / "a" / "adapter.safetensors"), progress=False)
    with pytest.raises(lowdim.LowdimError, match=r"other settings: no TrainJob\(full=True\) there, "
                                                 r"TrainJob\(full=True\) now; resume with"):
        run_train(job(out=tmp_path / "a", steps=2, resume=True, full=True, learning_rate=0.002), progress=False)
    with pytest.raises(lowdim.LowdimError) as refused:
        run_train(job(out=tmp_path / "init", steps=2, resume=True, initial=tmp_path / "a" / "adapter.safetensors",
                      rank=2, merge_frozen=False), progress=False)
    said = str(refused.value)
    assert ("other settings: TrainJob(rank=...) (4 there, 2 now); TrainJob(merge_frozen=...) (on there, off now);"
            in said), said
    assert "--" not in said
