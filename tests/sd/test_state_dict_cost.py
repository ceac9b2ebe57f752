"""The state-dict guard (lowdim/injection/state_guard.py) stays off the training path: every run with an out folder
fingerprints the base model through its state dict, and must not hash every frozen basis for it."""

from __future__ import annotations

import pytest

import lowdim
from lowdim.injection import state_guard
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_training_run_hashes_no_frozen_basis_for_the_model_fingerprint(tiny_sd, faces, tmp_path, monkeypatch):
    hashed = []
    real = state_guard.bases_fingerprint
    monkeypatch.setattr(state_guard, "bases_fingerprint", lambda slot: hashed.append(slot) or real(slot))
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    train(model, [Subject(faces, 0)], trainable, TrainConfig(steps=2, checkpoint_every=1), out_dir=tmp_path,
          progress=False)
    assert hashed == []
    model.pipe.unet.state_dict()  # a caller who keeps the slots' entries still gets them brought up to date
    assert hashed
