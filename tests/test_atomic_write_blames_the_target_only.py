"""``atomic_write`` turns into its one line only what the OS refused of the file being written (a full disk, a
file-size limit, a name too long, a read-only file system: review BD2), and says a long name cut in its middle
(BD6). Anything else the writer raises (a source file gone, PIL's own refusal, which is a bug) reaches the caller
as it was, naming its own file, with nothing left behind either way."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from safetensors import SafetensorError

from lowdim.atomic import atomic_write
from lowdim.errors import LowdimError


def test_a_missing_source_names_the_source_not_the_target(tmp_path):
    source = tmp_path / "gone.png"
    with pytest.raises(FileNotFoundError) as raised:
        atomic_write(tmp_path / "copy.png", lambda temp: shutil.copyfile(source, temp))
    assert raised.value.filename == str(source)
    assert os.listdir(tmp_path) == []


def test_a_writers_own_oserror_keeps_its_words(tmp_path):
    def write(temp: str) -> None:
        Path(temp).write_bytes(b"half")
        raise OSError("cannot write mode F as PNG")  # what PIL raises for an image it cannot encode: a bug

    with pytest.raises(OSError, match=r"^cannot write mode F as PNG$") as raised:
        atomic_write(tmp_path / "img.png", write)
    assert not isinstance(raised.value, LowdimError)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("code", "reason"), [(errno.ENOSPC, "No space left on device"),
                                              (errno.EFBIG, "File too large"),
                                              (errno.EROFS, "Read-only file system"),
                                              (errno.EDQUOT, "Disk quota exceeded")])
def test_what_the_os_refused_of_the_target_is_one_line(tmp_path, code, reason):
    def write(temp: str) -> None:
        Path(temp).write_bytes(b"half")
        raise OSError(code, os.strerror(code))  # a write() on an open file names no file

    with pytest.raises(LowdimError) as refused:
        atomic_write(tmp_path / "e.json", write)
    assert str(refused.value) == f"{tmp_path / 'e.json'}: could not write ({reason})"
    assert os.listdir(tmp_path) == []


def test_an_error_naming_the_temp_is_the_targets(tmp_path):
    def write(temp: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", temp)

    with pytest.raises(LowdimError, match=r"e\.json: could not write \(Permission denied\)$"):
        atomic_write(tmp_path / "e.json", write)


def test_a_rust_read_of_a_missing_source_is_not_blamed_on_the_target(tmp_path):
    def write(temp: str) -> None:
        raise SafetensorError("Error while deserializing header: I/O error: No such file or directory (os error 2)")

    with pytest.raises(SafetensorError, match="No such file"):
        atomic_write(tmp_path / "e.safetensors", write)


def test_a_name_too_long_is_said_cut_in_its_middle(tmp_path):
    out = tmp_path / ("a" * 300 + ".json")
    with pytest.raises(LowdimError) as refused:
        atomic_write(out, lambda temp: Path(temp).write_text("{}"))
    said = str(refused.value)
    assert said.endswith(".json: could not write (File name too long; 255 bytes at most)")
    assert "…" in said and len(said) < 200 and said.startswith(str(tmp_path)[:40])
    assert os.listdir(tmp_path) == []


def test_an_eval_report_the_disk_refuses_is_one_line_naming_its_file(tmp_path, monkeypatch):
    from lowdim_sd.eval.report import EvalReport, write_report

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)  # the rename that publishes the written report
    with pytest.raises(LowdimError) as refused:
        write_report(EvalReport(images=[], prompts=[], results=[]), tmp_path / "r")
    assert str(refused.value) == f"{tmp_path / 'r' / 'eval.json'}: could not write (No space left on device)"
    assert os.listdir(tmp_path / "r") == []


def test_an_eval_report_folder_that_cannot_be_made_is_one_line(tmp_path):
    from lowdim_sd.eval.report import EvalReport, write_report

    (tmp_path / "file").write_text("")
    with pytest.raises(LowdimError, match=r"^could not write the report into .*file/r: Not a directory$"):
        write_report(EvalReport(images=[], prompts=[], results=[]), tmp_path / "file" / "r")
