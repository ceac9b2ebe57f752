"""Tiny SD-architecture pipelines built in-process, saved as real diffusers folders."""

from __future__ import annotations

import pytest
import torch

from lowdim_sd.tiny import save_tiny_pipeline


@pytest.fixture
def one_thread():
    """One torch thread during the test, whatever the code under test (accelerate, CLI) sets."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """Path of a tiny random SD pipeline folder (epsilon prediction)."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "pipe", seed=0)


@pytest.fixture(scope="session")
def tiny_sd_v(tmp_path_factory):
    """The same architecture with a v-prediction scheduler."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tinyv") / "pipe", seed=0, prediction_type="v_prediction")


@pytest.fixture
def faces():
    """Two fixed 16x16 'reference images' in [-1, 1]."""
    generator = torch.Generator().manual_seed(3)
    return torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1
