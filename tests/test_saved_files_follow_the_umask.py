"""Files lowdim saves get the mode a plain ``open()`` would give them (0666 less the umask; 0644 under the usual
0022), not the 0600 of the temp file safetensors' ``save_file`` writes first: an A1111/ComfyUI server or a teammate
running as another user must be able to read an adapter, export or merged model (review Q, Q1).

The umask is process-wide, so each test sets a known one and puts the earlier one back."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.files import atomic_save

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX's")


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_save_writes_a_file_others_can_read_under_umask_022(tmp_path):
    with umask(0o022):
        path = atomic_save({"x": torch.zeros(1)}, {"a": "b"}, tmp_path / "m.safetensors")
    assert mode(path) == 0o644


def test_a_saved_adapter_is_readable_by_others_under_umask_022(tmp_path):
    model = nn.ModuleDict({"unet": nn.Sequential(nn.Linear(8, 8))})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["unet.0"], seed=0)
    with umask(0o022):
        path = lowdim.save_adapter(tmp_path / "me.safetensors", model)
    assert mode(path) == 0o644


# Umasks that leave the owner able to read and write (a umask taking those away is the user's own choice).
owner_keeps_read_write = st.integers(min_value=0, max_value=0o777).filter(lambda mask: not mask & 0o600)


@settings(max_examples=25, deadline=None)
@given(mask=owner_keeps_read_write)
def test_the_mode_of_a_saved_file_is_0666_less_the_umask(mask):
    with tempfile.TemporaryDirectory() as folder, umask(mask):
        path = atomic_save({"x": torch.zeros(1)}, {}, Path(folder) / "m.safetensors")
        assert mode(path) == 0o666 & ~mask
