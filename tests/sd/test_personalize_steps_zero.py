"""``lowdim personalize --steps 0`` with a hypernetwork: the prediction alone, the same file --only-hyper writes."""

from __future__ import annotations

import json

from safetensors import safe_open

from lowdim_cli.main import main

FINETUNE_KEYS = {"steps", "learning_rate", "batch_size", "rank"}


def written(folder):
    path = folder / "adapter.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118  (safe_open: no __iter__)
        extra = json.loads((handle.metadata() or {})["extra"])
    return path.stat().st_size, tensors, extra


def test_steps_zero_writes_what_only_hyper_writes(tiny_sd, face, tmp_path, make_hypernet):
    hypernet = make_hypernet(2)
    common = ["personalize", "-m", str(tiny_sd), "-i", str(face), "--hypernet", str(hypernet), "--no-preview",
              "--no-crop"]
    assert main([*common, "-o", str(tmp_path / "zero"), "--steps", "0"]) == 0
    assert main([*common, "-o", str(tmp_path / "only"), "--only-hyper"]) == 0
    zero_size, zero, zero_recipe = written(tmp_path / "zero")
    only_size, only, only_recipe = written(tmp_path / "only")
    assert zero.keys() == only.keys()
    assert all(zero[key].equal(only[key]) for key in only)
    assert not FINETUNE_KEYS & zero_recipe.keys(), zero_recipe  # no record of a finetune that never ran
    assert zero_size == only_size


def test_steps_zero_without_a_prediction_is_refused_in_one_line(tiny_sd, face, tmp_path, make_hypernet, capsys):
    """Nothing predicted and nothing trained: the file would draw nothing, so it is not written."""
    common = ["personalize", "-m", str(tiny_sd), "-i", str(face), "--no-preview", "--no-crop", "--steps", "0"]
    for out, extra in (("none", []), ("dropped", ["--hypernet", str(make_hypernet(1)), "--no-hyper"])):
        capsys.readouterr()
        assert main([*common, "-o", str(tmp_path / out), *extra]) == 1
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert "--steps 0" in lines[0] and "--hypernet" in lines[0], lines[0]
        assert not (tmp_path / out / "adapter.safetensors").exists()


def test_a_finetune_flag_beside_steps_zero_is_refused_not_dropped(tiny_sd, face, tmp_path, make_hypernet, capsys):
    """--steps 0 skips the finetune as --only-hyper does: a --rank or --lr given with it, even at its default, would
    shape nothing and be recorded for a LoRA never trained."""
    import pytest

    import lowdim
    from lowdim_sd.personalize import PersonalizeJob, personalize

    common = ["personalize", "-m", str(tiny_sd), "-i", str(face), "--hypernet", str(make_hypernet(1)),
              "--no-preview", "--no-crop", "--steps", "0", "-o", str(tmp_path / "o")]
    for flag in (["--rank", "8"], ["--rank", "4"], ["--lr", "0.01"]):
        capsys.readouterr()
        assert main([*common, *flag]) == 1
        err = " ".join(capsys.readouterr().err.split())
        assert f"{flag[0]} shapes the fast finetune, which --steps 0 skips; leave it out, or give --steps 1" in err
    assert not (tmp_path / "o").exists()
    job = PersonalizeJob(tiny_sd, face, out=tmp_path / "p", steps=0, rank=8, preview=False, crop=False)
    with pytest.raises(lowdim.LowdimError, match=r"PersonalizeJob\(rank=\.\.\.\) shapes the fast finetune, which "
                                                 r"PersonalizeJob\(steps=\.\.\.\) 0 skips"):
        personalize(job, progress=False)
