"""A model folder's config holding a size past lowdim's bound under a stranger's key (a line break or an escape
code in it, 100 KB of it) or as a 4,000-digit number: ``lowdim generate`` refuses it in one short line naming the
config, the key escaped and cut, never two lines or a wall of text (``lowdim/filecheck.py::check_sizes``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lowdim_cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

KEYS = {"line-break": "evil\nkey", "escape-code": "x\x1b[2Jy", "100kb": "k" * 100_000}
LONGEST_LINE = 400  # the config's path, the key cut, the bound


def refusal(tiny_sd: Path, tmp_path: Path, capsys, config: dict) -> str:
    """What `lowdim generate` prints refusing a copy of the tiny model whose text encoder's config holds ``config``
    besides its own keys."""
    folder = Path(shutil.copytree(tiny_sd, tmp_path / "pipe"))
    path = folder / "text_encoder" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    assert main(["generate", "-m", str(folder), "-p", "a face", "-o", str(tmp_path / "out")]) == 1
    return capsys.readouterr().err


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_a_strangers_key_is_one_bounded_escaped_line(tiny_sd, tmp_path, capsys, key):
    err = refusal(tiny_sd, tmp_path, capsys, {key: 10**9})
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "\x1b" not in err, err[:500]
    line = " ".join(err.split())
    assert "text_encoder/config.json: config " in line and "is 1000000000; lowdim accepts at most 16777216" in line
    assert len(line) < LONGEST_LINE + len(str(tmp_path)), line[:600]
    if len(key) < 100:
        assert ascii(key) in line  # escaped, whole


def test_a_number_of_thousands_of_digits_is_said_by_its_length(tiny_sd, tmp_path, capsys):
    err = refusal(tiny_sd, tmp_path, capsys, {"hidden_size": int("9" * 4_000)})
    line = " ".join(err.split())
    assert "config 'hidden_size' is a number of 4,000 digits; lowdim accepts at most 16777216" in line, line[:600]
    assert len(line) < LONGEST_LINE + len(str(tmp_path)), line[:600]


def test_a_plain_key_reads_as_before(tiny_sd, tmp_path, capsys):
    err = refusal(tiny_sd, tmp_path, capsys, {"num_hidden_layers": 10**6})
    assert "config 'num_hidden_layers' is 1000000; lowdim accepts at most 512" in " ".join(err.split())
