"""A .safetensors file cut short (an interrupted download or copy) is named as that, with how much of it is missing,
whatever its header's length: never "a pickle" because that length's first bytes read as a pickle's opcode
(0x280 -> 80 02), and never in safetensors' own words ("invalid header length")."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lowdim
from lowdim.errors import AdapterFileError
from lowdim.foreign_files import describe_foreign
from lowdim_cli.main import main


def safetensors_bytes(header_length: int) -> bytes:
    """A whole safetensors file's opening: the length, then a JSON header of exactly that many bytes."""
    if header_length >= 25:
        header = b'{"__metadata__":{"k":"' + b"v" * (header_length - 25) + b'"}}'
    else:
        header = b"{}" + b" " * (header_length - 2)  # safetensors pads its header with spaces
    assert len(header) == header_length
    return struct.pack("<Q", header_length) + header


def cut(tmp_path: Path, header_length: int, size: int) -> Path:
    path = tmp_path / "cut.safetensors"
    path.write_bytes(safetensors_bytes(header_length)[:size])
    return path


@pytest.mark.parametrize("header_length", [0x280, 0x300, 0x380, 0x480, 0x580])
def test_a_cut_adapter_is_one_line_saying_it_is_cut_short_and_by_how_much(tmp_path, capsys, header_length):
    path = cut(tmp_path, header_length, 300)
    said = f"a .safetensors file cut short (its header alone is {header_length + 8} bytes, the file holds 300)"
    with pytest.raises(AdapterFileError) as error:
        lowdim.read_adapter(path)
    line = str(error.value)
    assert line.startswith(f"{path}: ") and said in line and "\n" not in line
    assert "pickle" not in line and "header length" not in line
    assert line.endswith("copy or download it again: an interrupted copy leaves such a file")  # not another kind's
    assert main(["show", str(path)]) == 1
    err = capsys.readouterr().err
    shown = " ".join(err.split())
    assert f"{path}: {said}; copy or download it again" in shown and "pickle" not in shown and "Traceback" not in err


def test_header_lengths_that_open_like_a_pickle_read_as_the_others_do(tmp_path):
    lines = []
    for header_length in (0x280, 0x300):
        with pytest.raises(AdapterFileError) as error:
            lowdim.read_adapter(cut(tmp_path, header_length, 300))
        lines.append(str(error.value).replace(str(header_length + 8), "N"))
    assert lines[0] == lines[1]


@settings(max_examples=300, deadline=None)
@given(header_length=st.integers(min_value=2, max_value=1 << 20), cut_at=st.integers(min_value=9, max_value=1 << 20))
def test_a_cut_safetensors_file_is_never_named_as_another_kind(tmp_path_factory, header_length, cut_at):
    whole = safetensors_bytes(header_length)
    path = tmp_path_factory.mktemp("cut") / "x.safetensors"
    path.write_bytes(whole[:min(cut_at, len(whole) - 1)])
    said = describe_foreign(path)
    assert said is not None and said.startswith("a .safetensors file cut short"), said
    for other in ("pickle", "zip", "image", "text", "JSON"):
        assert other not in said


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_real_pickle_of_tensors_is_still_a_pickle(tmp_path, protocol):
    path = tmp_path / "adapter.safetensors"
    path.write_bytes(pickle.dumps({"A_train": torch.randn(40).tolist(), "B": [0.5] * 3}, protocol=protocol))
    assert describe_foreign(path) == "a pickle (torch.save / pickle.dump), not safetensors"
