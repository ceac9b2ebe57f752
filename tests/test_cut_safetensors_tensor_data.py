"""A .safetensors file cut inside its tensor data, past a whole header (the usual interrupted copy or download of
an adapter or a model): named cut short, with the bytes its tensors need and the bytes it holds, and told to be
copied again, in every reader's line; never in safetensors' own words ("incomplete metadata, file not fully
covered"). A whole file is still left to its reader."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError
from lowdim.foreign_files import describe_foreign
from lowdim_cli.main import main

SAFETENSORS_WORDS = ("deserializing", "incomplete metadata", "not fully covered", "not a readable")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """A real lowdim adapter file, as personalize and save_adapter write it."""
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16))
    lowdim.inject(model, lowdim.get_space("lora", rank=4), ["0", "1"])
    return lowdim.save_adapter(tmp_path_factory.mktemp("whole") / "adapter.safetensors", model)


def data_start(path: Path) -> int:
    """Where a safetensors file's tensor data begins: past its 8-byte length and its header."""
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(into_data=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_a_cut_into_the_tensor_data_is_named_cut_short_by_every_reader(adapter, tmp_path_factory, capsys, into_data):
    whole = adapter.read_bytes()
    start = data_start(adapter)
    keep = start + int(into_data * (len(whole) - start))
    cut = tmp_path_factory.mktemp("cut") / "adapter.safetensors"
    cut.write_bytes(whole[:keep])
    said = f"a .safetensors file cut short (its tensors need {len(whole)} bytes, the file holds {keep})"
    assert describe_foreign(cut) == said
    with pytest.raises(AdapterFileError) as error:
        lowdim.read_adapter(cut)
    assert str(error.value) == (f"{cut}: this is {said}; copy or download it again: an interrupted copy leaves "
                                f"such a file")
    capsys.readouterr()
    assert main(["show", str(cut)]) == 1
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    shown = " ".join(" ".join(lines).split())
    assert len(" ".join(captured.err.split()).split("Error: ")) == 2, lines  # one error, whatever the width wraps
    assert f"{cut}: {said}; copy or download it again" in shown, lines
    for words in SAFETENSORS_WORDS:
        assert words not in shown and words not in str(error.value)
    assert "Traceback" not in captured.err


def test_a_whole_file_and_one_with_bytes_to_spare_are_left_to_their_reader(adapter, tmp_path):
    assert describe_foreign(adapter) is None
    assert lowdim.read_adapter(adapter).layers[0].name == "0"
    longer = tmp_path / "longer.safetensors"
    longer.write_bytes(adapter.read_bytes() + bytes(16))  # not cut: safetensors says what is wrong with it
    assert describe_foreign(longer) is None


def test_a_model_checkpoint_cut_in_its_data_says_how_much_it_needs(tmp_path):
    import torch

    whole = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.a": torch.zeros(1000), "model.diffusion_model.b": torch.ones(10)}, str(whole))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[:data_start(whole) + 100])
    size = whole.stat().st_size
    assert describe_foreign(cut) == (f"a .safetensors file cut short (its tensors need {size} bytes, the file "
                                     f"holds {data_start(whole) + 100})")


@pytest.mark.parametrize("header", [b'{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, "8"]}}',
                                    b'{"x": {"dtype": "F32", "shape": [2]}}', b'{"x": 3}', b"[1, 2]", b"{not json}",
                                    b'{"__metadata__": {"format": "lowdim-adapter"}}'])
def test_a_garbled_header_is_left_to_safetensors(tmp_path, header):
    path = tmp_path / "garbled.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    assert describe_foreign(path) is None
