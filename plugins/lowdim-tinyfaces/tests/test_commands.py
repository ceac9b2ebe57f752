"""``lowdim tinyfaces-identities``: writes the folder, and a bad --out is one line, not a traceback."""

from __future__ import annotations

import pytest

from lowdim_cli.main import main


@pytest.mark.parametrize("target", ["face.png", "face.png/sub"])
def test_an_out_path_through_a_file_is_one_line_naming_it(tmp_path, capsys, target):
    (tmp_path / "face.png").write_bytes(b"not a folder")
    assert main(["tinyfaces-identities", "-o", str(tmp_path / target), "--count", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "face.png" in err[0] and "not a folder" in err[0]
    assert (tmp_path / "face.png").read_bytes() == b"not a folder"


def test_writes_count_identities(tmp_path, capsys):
    assert main(["tinyfaces-identities", "-o", str(tmp_path / "ids"), "--count", "2", "--split", "test"]) == 0
    assert sorted(p.name for p in (tmp_path / "ids").glob("*.png")) == ["id-00000.png", "id-00001.png"]
