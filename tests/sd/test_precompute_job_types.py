"""A PrecomputeJob setting of the wrong type from Python is one line naming it, before anything loads, as a
PersonalizeJob's is; the CLI's own parsing gives the right types, and its words stay its flags."""

from __future__ import annotations

import pytest

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.precompute import PrecomputeJob, precompute
from lowdim_sd.train import TrainConfig


@pytest.mark.parametrize(("fields", "words"), [
    ({"crop_margin": "0.6"}, "PrecomputeJob(crop_margin=...) must be a number, got '0.6'"),
    ({"batch_subjects": 2.5}, "PrecomputeJob(batch_subjects=...) must be an integer, got 2.5"),
    ({"crop": "no"}, "PrecomputeJob(crop=...) must be True, False or None, got 'no'"),
    ({"limit": "3"}, "PrecomputeJob(limit=...) must be an integer, got '3'"),
    ({"learning_rate": "x"}, "PrecomputeJob(learning_rate=...) must be a number, got 'x'"),
    ({"config": TrainConfig(steps="5")}, "TrainConfig(steps=...) must be an integer, got '5'"),
    ({"batch_subjects": 0}, "PrecomputeJob(batch_subjects=...) must be at least 1, got 0"),
    ({"face_index": -1}, "PrecomputeJob(face_index=...) must be 0 or more"),
])
def test_a_python_caller_is_told_the_setting(tiny_sd, tmp_path, monkeypatch, fields, words):
    monkeypatch.setattr("lowdim_sd.loading.load_sd", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(LowdimError) as refused:
        precompute(PrecomputeJob(model=str(tiny_sd), identities=tmp_path, out=tmp_path / "w", **fields),
                   progress=False)
    assert str(refused.value).startswith(words) and "\n" not in str(refused.value)
    assert not (tmp_path / "w").exists()


def test_the_command_still_names_its_flags(tiny_sd, tmp_path, capsys):
    assert main(["precompute", "-m", str(tiny_sd), "-i", str(tmp_path), "-o", str(tmp_path / "w"),
                 "--batch-subjects", "0"]) == 1
    assert "--batch-subjects must be at least 1, got 0" in capsys.readouterr().err
