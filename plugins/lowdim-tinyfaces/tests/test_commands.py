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


def _folder(path):
    return {p.name: p.read_bytes() if p.is_file() else sorted(q.name for q in p.iterdir())
            for p in sorted(path.iterdir())}


@pytest.mark.parametrize("other", [["--seed", "3"], ["--count", "4"], ["--renders", "2"], ["--split", "val"]])
def test_a_folder_of_other_identities_is_refused_in_one_line_and_left_as_it_was(tmp_path, capsys, other):
    ids = tmp_path / "ids"
    assert main(["tinyfaces-identities", "-o", str(ids), "--count", "3"]) == 0
    before = _folder(ids)
    capsys.readouterr()
    assert main(["tinyfaces-identities", "-o", str(ids), "--count", "3", *other]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(ids) in err[0] and "already holds 3 identities (train split, seed 0" in err[0]
    assert "pick a new --out or pass --overwrite" in err[0]
    assert _folder(ids) == before


def test_overwrite_leaves_exactly_the_new_set_as_a_fresh_folder_would_hold_it(tmp_path):
    from lowdim_tinyfaces.folders import read_levels

    ids, fresh = tmp_path / "ids", tmp_path / "fresh"
    assert main(["tinyfaces-identities", "-o", str(ids), "--count", "4", "--renders", "2"]) == 0
    (ids / "notes.txt").write_text("mine")
    assert main(["tinyfaces-identities", "-o", str(ids), "--count", "2", "--seed", "3", "--overwrite"]) == 0
    assert main(["tinyfaces-identities", "-o", str(fresh), "--count", "2", "--seed", "3"]) == 0
    assert _folder(ids) == {**_folder(fresh), "notes.txt": b"mine"}  # stale id-00002/03 gone, other files kept
    assert set(read_levels(ids)) == {"id-00000", "id-00001"}


def test_the_same_command_again_succeeds_and_writes_nothing(tmp_path, capsys):
    ids = tmp_path / "ids"
    command = ["tinyfaces-identities", "-o", str(ids), "--count", "2", "--seed", "3"]
    assert main(command) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in ids.iterdir()}
    assert main(command) == 0
    assert "already holds these 2 identities" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in ids.iterdir()} == stamps


def test_identities_a_run_cut_short_left_without_their_index_are_refused(tmp_path, capsys):
    ids = tmp_path / "ids"
    assert main(["tinyfaces-identities", "-o", str(ids), "--count", "2"]) == 0
    (ids / ".identities.json").unlink()
    assert main(["tinyfaces-identities", "-o", str(ids), "--count", "2"]) == 1
    assert "2 identities without a readable .identities.json" in capsys.readouterr().err


def test_the_help_names_every_style(capsys):
    from lowdim_tinyfaces.styles import STYLES

    assert main(["tinyfaces-identities", "--help"]) == 0
    said = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert all(style in said for style in STYLES), said


def test_a_refusal_of_one_earlier_identity_names_it_in_the_singular(tmp_path, capsys):
    ids = tmp_path / "ids"
    assert main(["tinyfaces-identities", "-o", str(ids), "--count", "1"]) == 0
    assert main(["tinyfaces-identities", "-o", str(ids), "--count", "1", "--seed", "3"]) == 1
    assert "already holds 1 identity (train split" in capsys.readouterr().err
    (ids / ".identities.json").unlink()
    assert main(["tinyfaces-identities", "-o", str(ids), "--count", "1"]) == 1
    assert "1 identity without a readable .identities.json" in capsys.readouterr().err
