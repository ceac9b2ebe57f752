"""Files lowdim writes are byte-identical for identical contents: users and CI compare them by hash.

safetensors 0.8 serialises the ``__metadata__`` map in an order that changes from process to process; lowdim
rewrites the header with its keys sorted, in place and at the same length, so the bytes no longer depend on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file

from lowdim.files import atomic_save
from lowdim.safetensors_header import sort_header_metadata

KEYS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


def header(path) -> bytes:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return data[8:8 + length]


@settings(max_examples=40, deadline=None)
@given(metadata=st.dictionaries(KEYS, VALUES, max_size=12), seed=st.integers(0, 2**16))
def test_a_save_writes_its_metadata_sorted_and_keeps_every_tensor_and_value(tmp_path_factory, metadata, seed):
    folder = tmp_path_factory.mktemp("sorted")
    generator = torch.Generator().manual_seed(seed)
    tensors = {"b": torch.rand(3, generator=generator), "a": torch.rand(2, 2, generator=generator).half()}
    path = atomic_save(tensors, metadata, folder / "x.safetensors")
    stored = json.loads(header(path)).get("__metadata__") or {}
    assert list(stored) == sorted(stored) and stored == metadata
    loaded = load_file(str(path))
    assert all(torch.equal(loaded[key], tensors[key]) for key in tensors)


@settings(max_examples=25, deadline=None)
@given(metadata=st.dictionaries(KEYS, VALUES, max_size=12))
def test_two_saves_of_the_same_contents_are_byte_identical_whatever_order_the_metadata_comes_in(
        tmp_path_factory, metadata):
    folder = tmp_path_factory.mktemp("same")
    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    first = atomic_save(tensors, metadata, folder / "1.safetensors")
    second = atomic_save(tensors, dict(reversed(list(metadata.items()))), folder / "2.safetensors")
    assert first.read_bytes() == second.read_bytes()


METADATA = {f"key{i}": f"value {i}" for i in range(24)}
SAVE = """
import json, sys, torch
from lowdim.files import atomic_save
atomic_save({"w": torch.arange(4.0)}, json.loads(sys.argv[2]), sys.argv[1])
"""


def test_saves_in_separate_processes_are_byte_identical(tmp_path):
    """The order safetensors picks differs between processes (a HashMap's random seed): this process and another
    agree. With 24 keys, two processes that left them in safetensors' order all but never write the same bytes."""
    here = atomic_save({"w": torch.arange(4.0)}, METADATA, tmp_path / "here.safetensors")
    there = tmp_path / "there.safetensors"
    subprocess.run([sys.executable, "-c", SAVE, str(there), json.dumps(METADATA)], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert hashlib.sha256(here.read_bytes()).hexdigest() == hashlib.sha256(there.read_bytes()).hexdigest()


def _write_as_another_tool(path, metadata: dict, escaped: bool, spaced: bool) -> None:
    """A safetensors file whose header another writer made: non-ASCII escaped (``\\u00e9``, json's default) or
    not, with spaces after its separators or not, its metadata in reverse order, padded as safetensors pads."""
    header = {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "__metadata__": dict(reversed(sorted(metadata.items())))}
    text = json.dumps(header, ensure_ascii=escaped, separators=(", ", ": ") if spaced else (",", ":"))
    raw = text.encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + struct.pack("<2f", 1.5, -2.0))


@settings(max_examples=60, deadline=None)
@given(metadata=st.dictionaries(KEYS, VALUES, min_size=2, max_size=8), escaped=st.booleans(), spaced=st.booleans())
def test_sorting_another_writers_header_keeps_the_file_readable_and_its_values(tmp_path_factory, metadata, escaped,
                                                                               spaced):
    """A header that cannot be sorted in its own bytes (escapes or spaces the sorted form would drop) is left as it
    is: never a shorter header followed by the old one's tail, which safetensors cannot read."""
    path = tmp_path_factory.mktemp("other") / "x.safetensors"
    _write_as_another_tool(path, metadata, escaped, spaced)
    sort_header_metadata(path)
    assert load_file(str(path))["t"].tolist() == [1.5, -2.0]
    with safe_open(str(path), "pt") as reopened:
        assert reopened.metadata() == metadata
    stored = json.loads(header(path))["__metadata__"]
    if not spaced and (not escaped or all(text.isascii() for pair in metadata.items() for text in pair)):
        assert list(stored) == sorted(stored)  # written as lowdim writes it: sorted in place
