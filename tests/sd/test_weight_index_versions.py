"""A weight folder another lowdim wrote: a newer index format is refused in one line that says to upgrade, wherever
the index is read (precompute's resume, train-hypernet -w, show); an index without a version is version 1; and a
cropped index from before its margin was recorded is continued at precompute's default margin."""

from __future__ import annotations

import json

import pytest
from weight_shard_files import write_shard_for  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.face_inputs import crop_settings
from lowdim_sd.faces import DEFAULT_MARGIN
from lowdim_sd.precompute import FORMAT, PrecomputeJob, precompute
from lowdim_sd.train import TrainConfig
from lowdim_sd.weight_index import done_identities, read_index

pytestmark = pytest.mark.usefixtures("one_thread")


def header(root, config: dict, **fields) -> dict:
    return {"format": FORMAT, "model": "tinyfaces", "space": "lidb", "space_config": {}, "seed": 0,
            "layer_set": "unet", "layers": [["unet.a", 4, 4]], "resolution": 32, "root": str(root),
            "config": config, **fields}


def weight_folder(folder, config: dict | None = None, **fields) -> None:
    """A weight folder of one identity, with the shard its header is checked against."""
    folder.mkdir()
    entry = {"name": "id-0", "shard": "shard-00000.safetensors", "row": 0, "seed": 0, "images": ["id-0/a.png"]}
    index = {**header(folder.parent / "ids", config or {"steps": 1}, **fields), "identities": [entry]}
    (folder / "index.json").write_text(json.dumps(index))
    write_shard_for(folder, index)


@pytest.mark.parametrize("version", ["2", 2])
def test_an_index_of_a_newer_format_version_is_one_line_saying_to_upgrade(tmp_path, version):
    weight_folder(tmp_path / "w", format_version=version)
    with pytest.raises(LowdimError) as raised:
        read_index(tmp_path / "w")
    said = str(raised.value)
    assert said.startswith(f"{tmp_path / 'w'}: ") and f"format version {version}" in said
    assert "this lowdim reads version 1" in said and said.endswith("upgrade lowdim")


@pytest.mark.parametrize("version", ["0", "1.0", "x"])
def test_an_index_of_a_version_no_lowdim_writes_is_not_told_to_upgrade(tmp_path, version):
    weight_folder(tmp_path / "w", format_version=version)
    with pytest.raises(LowdimError) as raised:
        read_index(tmp_path / "w")
    said = str(raised.value)
    assert f"format version {version!r}, which no lowdim writes" in said and "upgrade" not in said


@pytest.mark.parametrize("fields", [{}, {"format_version": "1"}, {"format_version": 1}])
def test_an_index_without_a_version_or_of_version_1_is_read(tmp_path, fields):
    weight_folder(tmp_path / "w", **fields)
    assert [entry["name"] for entry in read_index(tmp_path / "w")["identities"]] == ["id-0"]


def test_a_newer_part_of_the_index_is_refused_too(tmp_path):
    weight_folder(tmp_path / "w", format_version="1")
    part = {**header(tmp_path / "ids", {"steps": 1}, format_version="2"), "identities": []}
    (tmp_path / "w" / "index-p1.json").write_text(json.dumps(part))
    with pytest.raises(LowdimError, match="format version 2; this lowdim reads version 1: upgrade lowdim"):
        read_index(tmp_path / "w")


def test_a_part_made_with_other_settings_is_not_merged_into_the_index(tmp_path):
    # A part another run left (another --seed) would be read as one data set under index.json's header.
    weight_folder(tmp_path / "w")
    part = {**header(tmp_path / "ids", {"steps": 1}, seed=1), "identities": []}
    (tmp_path / "w" / "index-p1.json").write_text(json.dumps(part))
    with pytest.raises(LowdimError) as raised:
        read_index(tmp_path / "w")
    assert str(raised.value) == (f"{tmp_path / 'w' / 'index-p1.json'}: made with other settings than index.json; "
                                 "they cannot be merged")


def test_precompute_show_and_train_hypernet_refuse_a_newer_folder_in_one_line(tiny_sd, people, tmp_path, capsys,
                                                                              monkeypatch):
    out = tmp_path / "w"
    precompute(PrecomputeJob(model=str(tiny_sd), identities=people, out=out, config=TrainConfig(steps=1),
                             crop=False, limit=1), progress=False)
    index = json.loads((out / "index.json").read_text())
    (out / "index.json").write_text(json.dumps({**index, "format_version": "2"}))

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the folder's version was checked")

    monkeypatch.setattr("lowdim_sd.loading.load_sd", no_loading)
    for command in (["precompute", "-m", str(tiny_sd), "-i", str(people), "-o", str(out), "--steps", "1",
                     "--no-crop", "--device", "cpu"],
                    ["train-hypernet", "-w", str(out), "-o", str(tmp_path / "hyp"), "--steps", "1"],
                    ["show", str(out)]):
        assert main(command) == 1, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err
        assert f"{out}: " in err[0] and "format version 2" in err[0] and "upgrade lowdim" in err[0], err
    assert json.loads((out / "index.json").read_text())["identities"] == index["identities"]  # nothing added


# ------------------------------------------------------------------------------- a cropped index of no margin


@pytest.mark.parametrize("recorded", [{"crop": True}, {"crop": True, "crop_margin": None}])
def test_a_cropped_index_without_its_margin_resumes_at_the_default_margin(tmp_path, recorded):
    weight_folder(tmp_path / "w", {"steps": 1, **recorded})
    now = header(tmp_path / "ids", {"steps": 1, **crop_settings(True, DEFAULT_MARGIN, None)})
    assert list(done_identities(tmp_path / "w", now)) == ["id-0"]
    other = header(tmp_path / "ids", {"steps": 1, **crop_settings(True, 0.25, None)})
    with pytest.raises(LowdimError, match=rf"config.crop_margin \({DEFAULT_MARGIN} there, 0.25 now\)"):
        done_identities(tmp_path / "w", other)


def test_an_uncropped_index_of_no_crop_keys_still_resumes_uncropped_only(tmp_path):
    weight_folder(tmp_path / "w", {"steps": 1})
    assert list(done_identities(tmp_path / "w", header(tmp_path / "ids", {"steps": 1, **crop_settings(
        False, DEFAULT_MARGIN, None)}))) == ["id-0"]
    with pytest.raises(LowdimError, match=r"config.crop \(off there, on now\)"):
        done_identities(tmp_path / "w", header(tmp_path / "ids", {"steps": 1, **crop_settings(
            True, DEFAULT_MARGIN, None)}))
