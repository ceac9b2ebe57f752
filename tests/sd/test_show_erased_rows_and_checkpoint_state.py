"""``lowdim show`` on the files a run leaves that are no adapter: a weight shard whose identity was erased (its row
zeroed and its name blanked by a later precompute), and the optimizer state of a train-hypernet or train
checkpoint, which lowdim wrote and so says what it is and how a run continues from it (review BX1, BX3)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from lowdim_cli.main import main
from lowdim_sd.checkpoint_reading import optimizer_metadata
from lowdim_sd.file_info import describe

pytestmark = pytest.mark.usefixtures("one_thread")


def _shard(path, names: list[str]):
    rows = len(names)
    save_file({"layer/A": torch.zeros(rows, 2)}, str(path),
              {"format": "lowdim.weights.shard", "identities": json.dumps(names)})
    return path


def test_a_shard_with_an_erased_row_counts_and_names_only_the_identities_it_holds(tmp_path, capsys):
    shard = _shard(tmp_path / "shard-00001.safetensors", ["id-00002", "", "id-00004"])
    info = describe(shard)
    rows = dict(info.rows)
    assert rows["identities"] == "2: id-00002, id-00004"
    assert rows["erased rows"].startswith("1 (zeroed, its name blanked")
    assert info.as_dict()["fields"]["identities"] == ["id-00002", "id-00004"]
    assert info.as_dict()["fields"]["erased_rows"] == 1
    assert main(["show", str(shard)]) == 0
    assert "id-00002, id-00004" in capsys.readouterr().out


def test_a_shard_of_erased_rows_only_says_none_and_one_without_says_no_erased_row(tmp_path):
    rows = dict(describe(_shard(tmp_path / "shard-00000.safetensors", ["", ""])).rows)
    assert rows["identities"] == "0" and rows["erased rows"].startswith("2 (")
    whole = dict(describe(_shard(tmp_path / "shard-00002.safetensors", ["a", "b"])).rows)
    assert whole["identities"] == "2: a, b" and "erased rows" not in whole


def _optimizer_file(out, step: int, sibling: str):
    """A checkpoint's optimizer state as the writer lays it out: ``<param index>.<name>``, its metadata by
    ``optimizer_metadata``, next to the step's other files."""
    folder = out / "checkpoints" / f"step-{step:06d}"
    folder.mkdir(parents=True)
    parameters = [torch.zeros(3), torch.zeros(2, 2), torch.zeros(1)]
    tensors = {f"{index}.{name}": torch.zeros_like(param) for index, param in enumerate(parameters[:2])
               for name in ("exp_avg", "exp_avg_sq")}
    save_file(tensors, str(folder / "optimizer.safetensors"), optimizer_metadata(step, parameters, tensors))
    save_file({"layer/A": torch.zeros(3)}, str(folder / sibling), {"step": str(step)})
    (folder / "state.json").write_text(json.dumps({"step": step, "settings": {}}))
    return folder / "optimizer.safetensors"


@pytest.mark.parametrize(("sibling", "command"), [("hypernet.safetensors", "train-hypernet"),
                                                  ("trainable.safetensors", "train")])
def test_a_checkpoints_optimizer_state_says_whose_which_step_and_how_to_resume(tmp_path, capsys, sibling, command):
    path = _optimizer_file(tmp_path / "run", 60, sibling)
    info = describe(path)
    rows = dict(info.rows)
    assert info.kind == f"the optimizer state of a lowdim {command} checkpoint (step 60)"
    assert rows["step"] == "60" and rows["parameters"] == "3, 2 holding a state (exp_avg, exp_avg_sq)"
    assert info.use.startswith(f"lowdim {command} ") and f"-o {tmp_path / 'run'} --resume" in info.use
    assert info.as_dict()["fields"]["parameters"] == {"count": 3, "with_state": 2}
    assert main(["show", str(path)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "does not know" not in said and "--resume" in said


def test_an_optimizer_state_moved_out_of_its_checkpoint_is_still_named(tmp_path):
    path = _optimizer_file(tmp_path / "run", 4, "state.json.bak")
    moved = path.rename(tmp_path / "optimizer.safetensors")
    info = describe(moved)
    assert info.kind == "the optimizer state of a lowdim checkpoint (step 4)"
    assert "--resume" in info.use and "checkpoints/step-" in info.use


def test_an_optimizer_state_beside_an_unreadable_trained_state_says_the_checkpoint_is_damaged(tmp_path):
    path = _optimizer_file(tmp_path / "run", 60, "trainable.safetensors")
    (path.parent / "trainable.safetensors").write_bytes(b"")  # a resume from it would stop there
    info = describe(path)
    assert dict(info.rows)["damaged"].startswith(f"{path.parent / 'trainable.safetensors'}: not a readable "
                                                 f".safetensors file (")
    assert dict(info.rows)["damaged"].endswith("delete the checkpoint folder step-000060 to resume from an older one")
    assert info.use == ""
