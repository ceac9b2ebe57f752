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


def test_renders_write_one_sub_folder_of_photos_per_person_starting_with_the_flat_image(tmp_path):
    from lowdim_tinyfaces.folders import read_levels
    from PIL import Image

    from lowdim_sd.precompute import discover_identities

    assert main(["tinyfaces-identities", "-o", str(tmp_path / "flat"), "--count", "3"]) == 0
    assert main(["tinyfaces-identities", "-o", str(tmp_path / "people"), "--count", "3", "--renders", "3"]) == 0
    found = discover_identities(tmp_path / "people")
    assert [p.name for p in found] == ["id-00000", "id-00001", "id-00002"]
    assert all([i.name for i in p.images] == ["0.png", "1.png", "2.png"] for p in found)
    assert set(read_levels(tmp_path / "people")) == {"id-00000", "id-00001", "id-00002"}
    pixels = [[Image.open(i).tobytes() for i in person.images] for person in found]
    assert pixels[1][0] == Image.open(tmp_path / "flat" / "id-00001.png").tobytes()  # same person, same first photo
    assert len({photo for person in pixels for photo in person}) == 9  # every other photo differs


def test_bench_quality_uses_the_shipped_hypernetwork_when_none_is_named(tmp_path):
    from lowdim_tinyfaces.model_files import hypernet_path

    from lowdim_sd.bench.quality import QualityJob, prepare

    assert main(["tinyfaces-identities", "-o", str(tmp_path / "ids"), "--count", "1", "--split", "test"]) == 0
    job = QualityJob(identities=tmp_path / "ids", out=tmp_path / "out", methods=["only-hyper"], metrics=[])
    assert [task.method for task in prepare(job)] == ["only-hyper"]
    assert job.hypernet == hypernet_path()
