"""train-hypernet --gradient-checkpointing: the UNet's blocks recompute in the backward with the predicted
adapter they ran with, so a run trains as it does without checkpointing (it once stopped at its first backward
with torch's CheckpointError: the prediction's override had ended before the recomputation)."""

from __future__ import annotations

import inspect

import pytest
from diffusers import ModelMixin
from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd.hypertrain import train_hypernet

# diffusers 0.33 and later take the checkpoint function; 0.32 (pyproject's floor) calls torch's own.
TAKES_A_FUNCTION = "gradient_checkpointing_func" in inspect.signature(
    ModelMixin.enable_gradient_checkpointing).parameters

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("ckpt"), "w", 3, seed=4)


@pytest.mark.skipif(not TAKES_A_FUNCTION, reason="this diffusers calls torch's checkpoint itself")
def test_a_checkpointed_run_trains_as_a_plain_one(weights, tmp_path):
    plain = train_hypernet(job(weights, tmp_path / "plain", steps=2, val_identities=0), progress=False)
    checkpointed = train_hypernet(job(weights, tmp_path / "ckpt", steps=2, val_identities=0,
                                      gradient_checkpointing=True), progress=False)
    assert checkpointed.losses == pytest.approx(plain.losses, rel=1e-4)


@pytest.mark.skipif(TAKES_A_FUNCTION, reason="this diffusers takes the checkpoint function")
def test_an_older_diffusers_is_refused_in_one_line(weights, tmp_path):
    with pytest.raises(LowdimError, match="needs diffusers 0.33 or later"):
        train_hypernet(job(weights, tmp_path / "ckpt", steps=1, val_identities=0, gradient_checkpointing=True),
                       progress=False)
