"""What ``atomic_write`` says when the OS refuses the file it writes (review BG): an error naming the target or
its temp place is the target's one line, as is safetensors' I/O error that names no OS code; a name too long says
the most the file system takes whichever writer met it (BG15); a long path is cut only past its limit."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from lowdim.atomic import atomic_write, os_reason, shortened
from lowdim.errors import LowdimError


@pytest.mark.parametrize("named", ["target", "place"])
def test_a_full_disk_naming_the_target_or_its_temp_place_is_one_line(tmp_path, named):
    """A writer that opens files by name reports the path it was refusing: the target, or the folder it writes in."""
    out = tmp_path / "e.json"

    def write(temp: str) -> None:
        Path(temp).write_bytes(b"half")
        where = out if named == "target" else Path(temp).parent
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))

    with pytest.raises(LowdimError) as refused:
        atomic_write(out, write)
    assert str(refused.value) == f"{out}: could not write (No space left on device)"
    assert os.listdir(tmp_path) == []


def test_a_safetensors_io_error_without_an_os_code_is_the_targets(tmp_path):
    """safetensors' writer names no file; an I/O error while it writes the temp is the disk's, with or without the
    OS's code in its text."""
    def write(temp: str) -> None:
        Path(temp).write_bytes(b"half")
        raise SafetensorError("Error while serializing: IoError(I/O error: No space left on device)")

    with pytest.raises(LowdimError) as refused:
        atomic_write(tmp_path / "e.safetensors", write)
    assert str(refused.value).startswith(f"{tmp_path / 'e.safetensors'}: could not write (No space left on device")
    assert os.listdir(tmp_path) == []


def test_a_name_too_long_for_safetensors_says_the_most_the_file_system_takes(tmp_path):
    """The same words as a name too long met by Python's own calls: what the user must shorten the name to. Into a
    folder not made yet nothing looks the name up before safetensors' writer meets it."""
    most = os.pathconf(tmp_path, "PC_NAME_MAX")
    out = tmp_path / "new" / ("a" * 300 + ".safetensors")
    with pytest.raises(LowdimError) as refused:
        atomic_write(out, lambda temp: save_file({"x": torch.zeros(1)}, temp))
    assert str(refused.value).endswith(f".safetensors: could not write (File name too long; {most} bytes at most)")
    assert os.listdir(tmp_path / "new") == []


def test_safetensors_words_for_a_name_too_long_carry_the_limit(tmp_path):
    """Whatever safetensors' version does on its way to the OS, its error's "os error 36" is a name too long."""
    error = SafetensorError(f"Error while serializing: I/O error: File name too long (os error {errno.ENAMETOOLONG})")
    most = os.pathconf(tmp_path, "PC_NAME_MAX")
    assert os_reason(error, tmp_path / "x.safetensors") == f"File name too long; {most} bytes at most"
    assert os_reason(error) == "File name too long"  # no path: no file system to ask


def test_a_path_as_long_as_the_line_takes_is_said_whole():
    assert shortened("x" * 100) == "x" * 100
    cut = shortened("x" * 101)
    assert len(cut) == 100 and "…" in cut
