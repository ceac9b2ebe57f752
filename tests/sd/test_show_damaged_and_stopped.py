"""What `lowdim show` says of damaged files and of a precompute stopped before its end (reviews ET 2, 4-6, 8 and
EW 1-3): show and every load agree on a file (a hypernetwork holding NaN, a damaged `embedding_layers` record export
now refuses too, a missing `space` or `layers` record named as missing), a cosmetic record that is no number is a
row, not an exit 1; a symbolic link loop and an empty file are named as what they are; and a precompute's --out
stopped in its first batch or later, and its batch folder, are said to be precompute's, with its rerun as the use
line (never train-hypernet on a half-made folder, nor `lowdim train --resume` on precompute's private folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from safetensors_edit import rewrite  # tests/, on the path as pytest puts it

import lowdim
from lowdim.errors import AdapterFileError, LowdimError
from lowdim.hyper import load_hypernet
from lowdim_cli.main import main
from lowdim_sd.file_info import describe

pytestmark = pytest.mark.usefixtures("one_thread")

LOOP = "a symbolic link that leads to itself (a loop)"


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as handle:
        return dict(handle.metadata())


def _with_nan(path: Path) -> Path:
    """The file with one value of its first tensor NaN, as a diverged run's would hold."""
    tensors = _tensors(path)
    key = sorted(tensors)[0]
    broken = tensors[key].clone()
    broken.view(-1)[0] = float("nan")
    save_file({**tensors, key: broken}, str(path), _metadata(path))
    return path


def _shown_json(path: Path, capsys) -> dict:
    assert main(["show", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------- hypernetworks


def test_a_hypernetwork_holding_nan_is_the_loads_refusal_in_a_problem_row_and_no_use_line(make_hypernet, capsys):
    path = _with_nan(make_hypernet(1))
    with pytest.raises(LowdimError) as refused:
        load_hypernet(path)
    words = str(refused.value).removeprefix(f"{path}: ")
    assert "holds NaN or Inf values" in words
    info = describe(path)
    assert dict(info.rows)["problem"] == words and info.use == ""
    said = _shown_json(path, capsys)
    assert said["problem"] == words and said["command"] is None


def test_show_stops_reading_a_hypernetworks_values_after_its_time_and_says_it_did_not_check(make_hypernet,
                                                                                           monkeypatch):
    import lowdim_sd.file_info_parts as parts

    path = _with_nan(make_hypernet(1))
    monkeypatch.setattr(parts, "VALUES_SECONDS", 0.0)  # a stranger's file too large to read in show's time
    info = describe(path)
    rows = dict(info.rows)
    assert "problem" not in rows and rows["values"].startswith("not all checked for NaN or Inf")
    assert info.use.startswith("lowdim personalize")  # unchecked, not refused: the load is the judge


def _finished_hypernet_run(root: Path, made: Path) -> Path:
    """A train-hypernet --out as a finished run leaves it: its network, and checkpoints at steps 2 and 4 (each its
    network, an optimizer state and state.json, as the writer lays them out)."""
    from test_show_erased_rows_and_checkpoint_state import _optimizer_file  # tests/sd, on the path

    for step in (2, 4):
        folder = _optimizer_file(root, step, "hypernet.safetensors").parent
        shutil.copy(made, folder / "hypernet.safetensors")
    shutil.copy(made, root / "hypernet.safetensors")
    return root


@pytest.mark.parametrize("damage", ["cut", "nan"])
def test_a_finished_hypernet_runs_damaged_newest_checkpoint_is_what_its_checkpoints_row_says_resume_refuses(
        make_hypernet, tmp_path, damage):
    run = _finished_hypernet_run(tmp_path / "run", make_hypernet(1))
    assert "refuses" not in dict(describe(run).rows)["checkpoints"]  # sound checkpoints: nothing to say
    newest = run / "checkpoints" / "step-000004" / "hypernet.safetensors"
    if damage == "cut":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # an interrupted copy
    else:
        _with_nan(newest)
    info = describe(run)
    row = dict(info.rows)["checkpoints"]
    assert "--resume refuses it" in row and str(newest) in row and "delete the checkpoint folder step-000004" in row
    assert ("NaN or Inf" in row) == (damage == "nan")
    # The network itself is sound: no problem, and its use line stays.
    assert info.as_dict()["problem"] is None and info.use.startswith("lowdim personalize")


# ------------------------------------------------------------------------------------------------ adapters


def _sd_adapter(tiny_sd, folder: Path) -> Path:
    from lowdim_sd.loading import load_sd

    model = load_sd(str(tiny_sd))
    lowdim.inject(model.modules, lowdim.get_space("lidb"), ["*attn1.to_q"], seed=3)
    return lowdim.save_adapter(folder / "me.safetensors", model.modules, base_model=str(tiny_sd), token="sks")


@pytest.fixture(scope="module")
def sd_adapter(tiny_sd, tmp_path_factory) -> Path:
    return _sd_adapter(tiny_sd, tmp_path_factory.mktemp("adapter"))


def _copy(adapter: Path, tmp_path: Path, name: str = "copy.safetensors") -> Path:
    return Path(shutil.copy(adapter, tmp_path / name))


@pytest.mark.parametrize("record", ["not json", '{"a": 1}', '["nowhere"]'], ids=["corrupt", "object", "stray"])
def test_a_damaged_embedding_layers_record_is_refused_by_export_and_every_read_as_show_says(sd_adapter, tmp_path,
                                                                                            capsys, record):
    path = rewrite(_copy(sd_adapter, tmp_path), embedding_layers=record)
    problem = dict(describe(path).rows)["problem"]
    assert "embedding_layers" in problem and problem.endswith("every command that loads this file refuses it")
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(path)  # no model: the record is still read
    assert problem.startswith(str(refused.value).removeprefix(f"{path}: "))
    out = tmp_path / "shared.safetensors"
    assert main(["export", str(path), "-f", "kohya", "-o", str(out)]) == 1
    error = capsys.readouterr().err
    assert "embedding_layers" in error and str(path) in " ".join(error.split()) and "Traceback" not in error
    assert not out.exists()  # nothing shared whose record of its token tables is unreadable


@pytest.mark.parametrize(("value", "as_json"), [("lots", "lots"), ("1.5", 1.5), ("1e999", "1e999")])
def test_a_num_params_record_that_is_no_whole_number_is_said_in_its_row_and_show_exits_0(sd_adapter, tmp_path,
                                                                                          capsys, value, as_json):
    path = rewrite(_copy(sd_adapter, tmp_path), num_params=value)
    assert main(["show", str(path)]) == 0
    capsys.readouterr()
    row = dict(describe(path).rows)["trainable params"]
    assert row.startswith(f"unknown: the 'num_params' in the metadata is {value!r}, not a whole number"), row
    said = _shown_json(path, capsys)
    # a record no load reads (the file loads as it is): no problem, the use line stands, --json keeps the text
    assert said["problem"] is None and said["command"].startswith("lowdim generate")
    assert said["fields"]["trainable_params"] == as_json  # a number where it is one (JSON has no Infinity)
    lowdim.read_adapter(path)


@pytest.mark.parametrize("key", ["space", "layers", "space_config"])
def test_a_missing_record_the_load_needs_is_incomplete_metadata_naming_it(sd_adapter, tmp_path, capsys, key):
    path = _copy(sd_adapter, tmp_path)
    metadata = _metadata(path)
    del metadata[key]
    save_file(_tensors(path), str(path), metadata)
    words = f"incomplete metadata (no '{key}')"
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(path)
    assert str(refused.value) == f"{path}: {words}"
    info = describe(path)
    assert dict(info.rows)["problem"] == words and "needs" not in dict(info.rows) and info.use == ""
    assert main(["generate", "-m", "whatever", "-a", str(path), "-p", "a [V] face", "-o", str(tmp_path / "g")]) == 1
    error = " ".join(capsys.readouterr().err.split())
    assert words in error and "None" not in error and "unexpected tensor" not in error


# ------------------------------------------------------------------------------------ links and empty files


def test_a_symbolic_link_loop_is_named_as_one_not_as_missing(tmp_path, capsys):
    loop = tmp_path / "loop.safetensors"
    loop.symlink_to(loop.name)  # it leads to itself
    with pytest.raises(LowdimError, match=r"a symbolic link that leads to itself \(a loop\)"):
        describe(loop)
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(loop)
    assert str(refused.value) == f"{loop}: {LOOP}; expected a .safetensors adapter file"
    for command in (["show", str(loop)], ["export", str(loop), "-o", str(tmp_path / "out.safetensors")]):
        assert main(command) == 1
        error = " ".join(capsys.readouterr().err.split())
        assert LOOP in error and "no such" not in error, error


def test_an_empty_file_is_said_to_be_empty_not_a_header_too_small(tmp_path, capsys):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(empty)
    assert str(refused.value) == f"{empty}: empty (0 bytes); expected a .safetensors adapter file"
    with pytest.raises(LowdimError, match=r"empty \(0 bytes\)"):
        load_hypernet(empty)
    assert main(["show", str(empty)]) == 1
    error = " ".join(capsys.readouterr().err.split())
    assert "empty (0 bytes)" in error and "header too small" not in error


# ---------------------------------------------------------------------------------- a stopped precompute

STEPS = 4


@pytest.fixture(scope="module")
def stopped(tiny_sd, model, tmp_path_factory) -> dict[str, Path]:
    """Precompute runs of three identities stopped by a Ctrl-C (as tests/sd/test_precompute_batch_in_flight.py
    stops them): "first", in its first batch (two identities, at step 3 of 4); "later", in its second batch of one
    identity (the first kept in index.json); "parts", the later one as a run of several processes leaves it (its
    index a part not merged, its batch folder process 0's)."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    import lowdim_sd.train as engine
    from lowdim_sd.precompute import PrecomputeJob, precompute
    from lowdim_sd.train import TrainConfig

    root = tmp_path_factory.mktemp("stopped")
    for number in range(3):
        images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(number)) * 2 - 1
        save_images(images, root / "people" / f"person{number}", "img")
    real, count = engine._one_step, [0]

    def stop_at(step: int):
        def one_step(*args, **kwargs):
            count[0] += 1
            if count[0] == step:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        return one_step

    made = {}
    for name, subjects, step in (("first", 2, 3), ("later", 1, STEPS + 3)):
        count[0] = 0
        job = PrecomputeJob(model=str(tiny_sd), identities=root / "people", out=root / name,
                            config=TrainConfig(steps=STEPS), batch_subjects=subjects, crop=False)
        with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
            patch.setattr(engine, "_one_step", stop_at(step))
            precompute(job, progress=False, model=model)
        made[name] = root / name
    parts = Path(shutil.copytree(made["later"], root / "parts"))
    (parts / "index.json").rename(parts / "index-p0.json")
    (parts / ".batch-in-flight").rename(parts / ".batch-in-flight-p0")
    made["parts"] = parts
    return made


def test_a_precompute_stopped_in_its_first_batch_is_said_to_be_one_with_its_kept_steps_and_rerun(stopped, capsys):
    out = stopped["first"]
    assert not (out / "index.json").exists() and (out / ".batch-in-flight" / "batch.json").is_file()
    info = describe(out)
    rows = dict(info.rows)
    assert info.type == "stopped_precompute" and "no identity is kept yet" in rows["unfinished"]
    assert "rerun the same precompute command" in rows["unfinished"]
    assert rows["batches in flight"].startswith(".batch-in-flight: person0, person1, 2 of 4 steps kept (its "
                                                "checkpoint step-000002)")
    assert info.use.startswith("lowdim precompute -m ") and f" -o {out} " in info.use
    said = _shown_json(out, capsys)
    assert said["type"] == "stopped_precompute" and said["problem"] == rows["unfinished"]
    assert said["fields"]["batches_in_flight"] == [{"folder": str(out / ".batch-in-flight"),
                                                     "identities": ["person0", "person1"], "step": 2, "steps": STEPS}]


@pytest.mark.parametrize("name", ["later", "parts"])
def test_a_precompute_stopped_later_is_unfinished_with_no_train_hypernet_line(stopped, name):
    out = stopped[name]
    info = describe(out)
    rows = dict(info.rows)
    assert info.type == "stopped_precompute" and "1 identity kept" in rows["unfinished"]
    assert ("index parts of 1 process" in rows["unfinished"]) == (name == "parts")
    batch = ".batch-in-flight-p0" if name == "parts" else ".batch-in-flight"
    assert rows["batches in flight"].startswith(f"{batch}: person1, 2 of 4 steps kept")
    assert rows["identities"].startswith("1 in 1 shard") and "train-hypernet" not in info.use
    assert info.use.startswith("lowdim precompute") and info.as_dict()["problem"] == rows["unfinished"]


def test_index_parts_not_merged_are_unfinished_without_any_batch_folder(stopped, tmp_path):
    out = Path(shutil.copytree(stopped["parts"], tmp_path / "parts"))
    shutil.rmtree(out / ".batch-in-flight-p0")  # a process killed after its last batch, before the merge
    info = describe(out)
    assert info.type == "stopped_precompute" and "not merged into index.json" in dict(info.rows)["unfinished"]
    assert "batches in flight" not in dict(info.rows) and "train-hypernet" not in info.use


@pytest.mark.parametrize("inside", ["", "checkpoints", "checkpoints/step-000002",
                                    "checkpoints/step-000002/trainable.safetensors"])
def test_precompute_s_batch_folder_and_the_checkpoints_in_it_are_never_a_train_resume(stopped, inside):
    batch = stopped["first"] / ".batch-in-flight"
    info = describe(batch / inside if inside else batch)
    assert info.use.startswith("lowdim precompute") and "--resume" not in info.use, info.use
    assert f" -o {stopped['first'].absolute() if inside else stopped['first']} " in info.use
    if not inside:
        assert info.type == "stopped_precompute"
        assert dict(info.rows)["unfinished"].startswith(f"precompute's batch in flight of {stopped['first']}")
        assert dict(info.rows)["batch"].startswith(".batch-in-flight: person0, person1, 2 of 4 steps kept")
    else:
        assert "precompute's batch in flight" in info.kind and "run" not in dict(info.rows)
