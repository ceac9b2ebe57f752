"""What `lowdim export` and `lowdim merge --format single-file` write is readable by others under the usual umask
0022 (mode 0644), as a plain ``open()`` would make it: the A1111/ComfyUI server that reads a LoRA or checkpoint
often runs as another user. safetensors' ``save_file`` makes 0600 files of its own (review Q, Q1).

The umask is process-wide, so the test sets a known one and puts the earlier one back."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lowdim_cli.main import main

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX's"),
              pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")]


@pytest.fixture(scope="module")
def adapter(untrained_adapter) -> Path:
    return untrained_adapter


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("fmt", ["kohya", "diffusers"])
def test_an_exported_lora_is_readable_by_others(adapter, tmp_path, umask_022, fmt):
    out = tmp_path / f"me.{fmt}.safetensors"
    assert main(["export", str(adapter), "--format", fmt, "-o", str(out)]) == 0
    assert mode(out) == 0o644


def test_a_single_file_merge_is_readable_by_others(tiny_sd, adapter, tmp_path, umask_022):
    out = tmp_path / "merged.safetensors"
    assert main(["merge", "-m", str(tiny_sd), "-a", str(adapter), "-o", str(out), "--format", "single-file"]) == 0
    assert mode(out) == 0o644
