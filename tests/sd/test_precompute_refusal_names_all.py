"""A refused ``lowdim precompute`` rerun names every setting it would record otherwise, so one rerun fixes them
all (past eight, the rest are counted, as ``lowdim train --resume``'s refusal does); from Python, its other
refusals (another dtype, another identities folder) name the ``PrecomputeJob`` fields, not the flags."""

from __future__ import annotations

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim_cli.main import main
from lowdim_sd.precompute import PrecomputeJob, precompute
from lowdim_sd.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def args(tiny_sd, tmp_path) -> list[str]:
    """A precompute of two people into ``tmp_path/w``."""
    for number in range(2):
        save_images(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(number)) * 2 - 1,
                    tmp_path / "people" / f"p{number}", "x")
    return ["precompute", "-m", str(tiny_sd), "-i", str(tmp_path / "people"), "-o", str(tmp_path / "w"), "--steps",
            "1", "--no-crop", "--device", "cpu"]


def _refusal(capsys, args: list[str]) -> str:
    """The one line a refused rerun prints, its wrapping undone."""
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("Error:") == 1, err
    return " ".join(err.split())


def test_a_rerun_names_every_difference_and_counts_those_past_eight(args, capsys):
    assert main(args) == 0
    capsys.readouterr()
    said = _refusal(capsys, [*args, "--lr", "1e-2", "--no-augment", "--seed", "3"])  # a third one is named too
    assert ("other settings: --seed (0 there, 3 now); --augment there, --no-augment now; --lr (0.002 there, 0.01 "
            "now); rerun with") in said
    more = ["--set", "rank=2", "--batch-size", "2", "--optimizer", "sgd", "--prompt", "a [V] person", "--token",
            "zqx", "--shared-noise", "--mixed-precision", "bf16", "--steps", "2"]
    said = _refusal(capsys, [*args, "--lr", "1e-2", "--no-augment", "--seed", "3", *more])
    assert said.count(" there") == 8 and "; and 3 more; rerun with" in said, said


def _job(tiny_sd, identities, out, **fields) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=identities, out=out, crop=False, device="cpu",
                         config=TrainConfig(steps=1), **fields)


def test_from_python_another_dtype_or_folder_is_named_by_the_fields(tiny_sd, people, tmp_path):
    precompute(_job(tiny_sd, people, tmp_path / "w", dtype="fp32"))
    with pytest.raises(lowdim.LowdimError, match=r"trained in fp32, .*: pass dtype='fp32' to") as refused:
        precompute(_job(tiny_sd, people, tmp_path / "w", dtype="bf16"))
    assert "--" not in str(refused.value) and "use another out to start anew" in str(refused.value)
    others = tmp_path / "others"
    save_images(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1, others / "q", "x")
    with pytest.raises(lowdim.LowdimError, match=r"holds weights of the identities in .*: use another out ") as refused:
        precompute(_job(tiny_sd, others, tmp_path / "w", dtype="fp32"))
    assert "--" not in str(refused.value) and " -w " not in str(refused.value)
