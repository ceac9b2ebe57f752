"""Task FHQ of session 61: train-hypernet's refusal of two -w folders made otherwise names the folders on every line
(settings, --init, the model's layers), as precompute's own lines name ``there``/``now``; a NaN row read by
``WeightDataset`` names its folder and identity and gives the advice that works (precompute into the same folder trains
it again); a folder an older lowdim recorded with --crop-margin past today's bound (3) is rerun at that margin, and
another margin gets the header's difference line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.faces import MAX_MARGIN
from lowdim_sd.precompute import PrecomputeJob, precompute
from lowdim_sd.train import TrainConfig
from lowdim_sd.weight_dataset import WeightDataset
from lowdim_sd.weight_index import read_index

pytestmark = pytest.mark.usefixtures("one_thread")


def _copy(weights: Path, to: Path) -> Path:
    shutil.copytree(weights, to)
    return to


def _edit(folder: Path, change) -> None:
    index = json.loads((folder / "index.json").read_text())
    change(index)
    (folder / "index.json").write_text(json.dumps(index))


def _job(tiny_sd, weights: Path, out: Path, **fields) -> PrecomputeJob:
    """The precompute that made conftest's ``weights`` (its ``weight_folders``), into ``out``."""
    return PrecomputeJob(model=str(tiny_sd), identities=Path(read_index(weights)["root"]), out=out,
                         config=TrainConfig(steps=3), batch_subjects=4, **{"crop": False, **fields})


# ------------------------------------------------------------------------------------ two folders, each line


def _other_settings(first: dict, other: dict) -> None:
    other["seed"] = other["config"]["seed"] = 1
    other["config"]["augment"] = False
    other["config"]["learning_rate"] = 0.01
    other["space_config"]["rank"] = first["space_config"]["rank"] + 1


def _init_added(first: dict, other: dict) -> None:
    other["config"]["init"] = "d1"
    other["init_path"] = {"given": "/data/start.safetensors", "resolved": "/data/start.safetensors"}


def _init_rewritten(first: dict, other: dict) -> None:  # one --init path, other bytes: the file changed in between
    for side, digest in ((first, "d1"), (other, "d2")):
        side["config"]["init"] = digest
        side["init_path"] = {"given": "/data/start.safetensors", "resolved": "/data/start.safetensors"}


def _fewer_layers(first: dict, other: dict) -> None:  # same --model and --layers: the model changed in between
    other["layers"] = other["layers"][:-1]


def _listed(shown: str) -> list[str]:
    """The lines of a refusal, split at each ``; `` outside parentheses (the layers line holds one of its own)."""
    lines, depth, start = [], 0, 0
    for at, character in enumerate(shown):
        depth += {"(": 1, ")": -1}.get(character, 0)
        if depth == 0 and shown.startswith("; ", at):
            lines.append(shown[start:at])
            start = at + 2
    return [*lines, shown[start:]]


@pytest.mark.parametrize("change, count", [(_other_settings, 4), (_init_added, 1), (_init_rewritten, 1),
                                           (_fewer_layers, 1)], ids=["settings", "init", "init-rewritten", "layers"])
def test_every_line_of_a_two_folder_refusal_names_both_folders(weights, tmp_path, capsys, change, count):
    first, other = _copy(weights, tmp_path / "wa"), _copy(weights, tmp_path / "wb")
    indexes = [json.loads((folder / "index.json").read_text()) for folder in (first, other)]
    change(*indexes)
    for folder, index in zip((first, other), indexes, strict=True):
        (folder / "index.json").write_text(json.dumps(index))
    assert main(["train-hypernet", "-w", str(first), "-w", str(other), "-o", str(tmp_path / "h"),
                 "--encoder-config", "tiny", "--steps", "1"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    head = f"{other}: made with other settings than {first}: "
    assert head in err and "Traceback" not in err, err
    lines = _listed(err.split(head)[1].split("; only weight folders made alike")[0])
    assert len(lines) == count, lines
    for line in lines:
        assert f"in {first}" in line and f"in {other}" in line, line
        rest = line.replace(str(first), "FIRST").replace(str(other), "OTHER")
        assert not re.search(r"\b(there|now)\b", rest), line  # a rerun's words, wrong for two folders


def test_the_layers_line_gives_each_folders_count(weights, tmp_path, capsys):
    first, other = _copy(weights, tmp_path / "wa"), _copy(weights, tmp_path / "wb")
    count = len(read_index(first)["layers"])
    _edit(other, lambda index: _fewer_layers({}, index))
    with pytest.raises(LowdimError) as refused:
        WeightDataset([first, other])
    assert (f"the layers of the model ({count} in {first}, {count - 1} in {other}; the model changed between the two "
            f"precomputes)") in str(refused.value)


def test_a_value_that_reads_there_and_now_is_kept_whole(weights, tmp_path, capsys):
    first, other = _copy(weights, tmp_path / "wa"), _copy(weights, tmp_path / "wb")
    prompt = read_index(first)["config"]["prompt"]
    _edit(other, lambda index: index["config"].update(prompt="a [V] person over there, now"))
    assert main(["train-hypernet", "-w", str(first), "-w", str(other), "-o", str(tmp_path / "h"),
                 "--encoder-config", "tiny", "--steps", "1"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"--prompt ({prompt} in {first}, a [V] person over there, now in {other}); only" in err, err


# ------------------------------------------------------------------------------------------------ a NaN row


def test_a_nan_row_names_its_folder_and_identity_and_a_rerun_into_that_folder_heals_it(weights, tiny_sd, tmp_path):
    folder = _copy(weights, tmp_path / "w")
    entry = read_index(folder)["identities"][1]
    shard = folder / entry["shard"]
    with safe_open(str(shard), framework="pt") as opened:
        tensors, metadata = {key: opened.get_tensor(key) for key in opened.keys()}, opened.metadata()  # noqa: SIM118
    key = sorted(tensors)[0]
    tensors[key][entry["row"]] = float("nan")
    save_file(tensors, str(shard), metadata=metadata)
    data = WeightDataset(folder)  # headers only: the row's values are read with it
    with pytest.raises(LowdimError) as refused:
        data.weights(data.names.index(entry["name"]))
    said = str(refused.value)
    assert said.startswith(f"{shard}: tensor '{key}' holds NaN or Inf values in row {entry['row']} (identity "
                           f"'{entry['name']}'); refusing it"), said
    assert f"rerun the lowdim precompute that made {folder} into it" in said and "new one" not in said, said
    with pytest.warns(UserWarning, match=f"identity '{entry['name']}'.*training it again"):
        result = precompute(_job(tiny_sd, folder, folder), progress=False)  # the advice, followed
    assert result.trained == [entry["name"]]
    healed = WeightDataset(folder)
    for number in range(len(healed.names)):  # every row reads, the healed one included
        assert all(torch.isfinite(value).all() for params in healed.weights(number).values()
                   for value in params.values())


# ------------------------------------------------------------------------------- a margin past today's bound


@pytest.fixture
def wide(weights, tmp_path) -> Path:
    """A copy of ``weights`` whose index records a crop at margin 3.5, as a lowdim before session 59 allowed."""
    folder = _copy(weights, tmp_path / "wide")
    _edit(folder, lambda index: index["config"].update(crop=True, crop_margin=MAX_MARGIN + 0.5, face_index=None))
    return folder


def test_a_folder_recorded_past_the_margin_bound_is_rerun_at_its_own_margin(wide, tiny_sd):
    names = sorted(entry["name"] for entry in read_index(wide)["identities"])
    result = precompute(_job(tiny_sd, wide, wide, crop=True, crop_margin=MAX_MARGIN + 0.5), progress=False)
    assert result.trained == [] and sorted(result.skipped) == names


@pytest.mark.parametrize("margin", [0.6, MAX_MARGIN + 1])
def test_another_margin_for_that_folder_is_the_header_difference(wide, tiny_sd, margin):
    with pytest.raises(LowdimError, match=rf"PrecomputeJob\(crop_margin=\.\.\.\) \({MAX_MARGIN + 0.5} there, {margin} "
                                          rf"now\); rerun with those to continue"):
        precompute(_job(tiny_sd, wide, wide, crop=True, crop_margin=margin), progress=False)


def test_a_new_folder_is_still_held_to_the_bound(weights, tiny_sd, tmp_path):
    job = _job(tiny_sd, weights, tmp_path / "new", crop=True, crop_margin=MAX_MARGIN + 0.5)
    with pytest.raises(LowdimError, match=r"crop_margin=\.\.\.\) must be a finite number from 0 to 3"):
        precompute(job, progress=False)
    assert not (tmp_path / "new").exists()
