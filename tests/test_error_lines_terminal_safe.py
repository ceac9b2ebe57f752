"""An error or warning line the CLI prints stays one line that cannot drive the terminal, whatever the path or value
it names holds: a newline, an escape code, or bytes that are not UTF-8 (a file name may hold any of them)."""

from __future__ import annotations

import os
import sys

import pytest

from lowdim_cli.main import main


@pytest.mark.parametrize("name", ["no\n\x1b[31msuch.safetensors", "tab\there.safetensors"],
                         ids=["newline-escape", "tab"])
def test_an_error_naming_a_path_with_control_characters_is_one_escaped_line(tmp_path, capsys, name):
    path = tmp_path / name
    assert main(["show", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\t" not in err, repr(err)
    assert repr(name)[1:-1].split("such")[0] in err or "\\t" in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names are bytes")
def test_an_error_naming_a_path_that_is_not_utf8_is_printed_not_a_crash(tmp_path, capsys):
    path = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.safetensors")  # Latin-1 bytes: a lone surrogate
    assert main(["show", path]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "caf\\xe9" in err, repr(err)
