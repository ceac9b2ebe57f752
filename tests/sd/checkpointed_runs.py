"""A tiny LiDB training run checkpointed at step 2, for the tests that edit, damage or resume its checkpoint
folder: made once per test module (``made``), copied for each test (``run``)."""

from __future__ import annotations

import shutil

import pytest
import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, train

CONFIG = TrainConfig(steps=4, learning_rate=2e-2, augment=False, checkpoint_every=2)
STEP = "step-000002"


def train_run(tiny_sd, faces, out, steps=4, resume=False) -> tuple:
    """Train the tiny model's LiDB adapter into ``out``; (its state after the run, the run's result)."""
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    config = TrainConfig(**{**CONFIG.__dict__, "steps": steps})
    result = train(model, [Subject(faces, 0)], trainable, config, out_dir=out, resume=resume, progress=False)
    return trainable.state(), result


@pytest.fixture(scope="module")
def made(tiny_sd, tmp_path_factory):
    """A run of two steps with its checkpoint (step-000002), copied per test."""
    faces = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    out = tmp_path_factory.mktemp("made") / "run"
    train_run(tiny_sd, faces, out, steps=2)
    return out


@pytest.fixture
def run(made, tmp_path):
    shutil.copytree(made, tmp_path / "run")
    return tmp_path / "run"
