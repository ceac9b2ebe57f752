"""Tests that kill the mutants of session 60's new lines which its own tests let live (task FHP): each asserts what
a user relies on, through the function that decides it (no model load, no CLI run)."""

from __future__ import annotations

import os
from pathlib import Path

from lowdim_sd.recorded_paths import recorded_path, recorded_text, shared_model_name


def test_a_shared_file_names_a_relative_windows_model_folder_by_its_name_alone():
    # a backslash makes it a path (no hub id holds one): its folder layout stays on the user's machine
    assert shared_model_name("models\\my-sd") == "my-sd"
    assert shared_model_name("org/name") == "org/name"  # a hub id as it is


def test_two_spellings_of_one_file_record_the_same_place(tmp_path, monkeypatch):
    target = tmp_path / "net.safetensors"
    target.write_bytes(b"x")
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    monkeypatch.chdir(tmp_path)
    real = os.path.realpath(target)
    assert recorded_path(str(link)) == real  # an older record's plain path, links followed
    assert recorded_path("net.safetensors") == real  # taken from the working folder
    assert recorded_path({"file": str(link)}) == recorded_path(str(target))


def test_a_shipped_record_is_named_by_its_model_and_its_file():
    record = {"file": "hypernet.safetensors", "shipped_with": "tinyfaces"}
    assert recorded_text(record) == "the network shipped with tinyfaces (hypernet.safetensors)"
    assert recorded_text({"file": "", "shipped_with": "tinyfaces"}) == "the network shipped with tinyfaces"
    assert recorded_text("/home/alice/net.safetensors") == "/home/alice/net.safetensors"


def _settings(run_seed: int, seeds: dict[str, int]) -> dict:
    return {"seed": run_seed, "steps": 10, "inputs": {"images": {}, "seeds": seeds, "model": "abc"}}


def test_a_resume_names_the_one_subject_whose_noise_seed_changed():
    from lowdim_sd.checkpoint_settings import differences_between

    found = differences_between(_settings(1, {"a": 5, "b": 6}), _settings(1, {"a": 5, "b": 7}))
    assert found == ["the noise seed of subject 'b' (6 there, 7 now)"]
    assert differences_between(_settings(1, {"a": 5, "b": 6}), _settings(1, {"a": 5, "b": 6})) == []


def test_a_single_subjects_noise_seed_is_said_without_its_name():
    from lowdim_sd.checkpoint_settings import differences_between

    assert differences_between(_settings(1, {"x": 5}), _settings(1, {"y": 8})) == ["the noise seed (5 there, 8 now)"]


def test_another_run_seed_is_said_once_not_once_per_subject():
    from lowdim_sd.checkpoint_settings import differences_between

    found = differences_between(_settings(1, {"a": 5, "b": 6}), _settings(2, {"a": 9, "b": 10}))
    assert len(found) == 1 and "seed" in found[0] and "subject" not in found[0]


def test_only_the_main_process_sweeps_a_batch_folder_another_process_count_left(tmp_path):
    from lowdim_sd.precompute_batches import FOLDER, sweep_other_runs

    (tmp_path / FOLDER).mkdir()  # a one-process run's batch: no share of a two-process run's
    (tmp_path / f"{FOLDER}-p1").mkdir()  # this run's second process's own
    sweep_other_runs(tmp_path, 1, 2)
    assert (tmp_path / FOLDER).is_dir()  # the other process leaves it: two removing one folder race
    sweep_other_runs(tmp_path, 0, 2)
    assert not (tmp_path / FOLDER).exists() and (tmp_path / f"{FOLDER}-p1").is_dir()


def _stopped_batch(folder: Path, names: list[str], step: int = 4) -> Path:
    """A batch folder as a stopped precompute leaves it: its record and one complete checkpoint at ``step``."""
    import json

    checkpoint = folder / "checkpoints" / f"step-{step:06d}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text(json.dumps({"step": step, "settings": {}}))
    (folder / "batch.json").write_text(json.dumps({"identities": names, "header": {"config": {"steps": 10}}}))
    return folder


def test_a_batch_the_index_holds_already_is_no_batch_to_resume(tmp_path):
    from lowdim_sd.precompute_batches import kept_in

    folder = _stopped_batch(tmp_path / ".batch-in-flight", ["a", "b"])
    kept = kept_in(folder, 10)
    assert kept is not None and (kept.names, kept.step, kept.steps) == (["a", "b"], 4, 10)
    assert kept_in(folder, 10, done={"a", "b", "c"}) is None  # a stop came as the folder was being removed
    assert kept_in(folder, 10, done={"a"}) is not None


def test_the_same_identities_in_another_order_are_another_batch(tmp_path):
    # each identity's adapter is a row of the batch: resumed in another order, a's steps would go on as b's
    from lowdim_sd.precompute_batches import InFlight, Kept

    in_flight = InFlight(tmp_path, {"config": {"steps": 10}}, set(), print)
    why = in_flight._why_not(Kept(tmp_path, ["a", "b"], 4, 10), ["b", "a"], {})
    assert why is not None and "first batch is" in why


def test_a_stopped_batch_the_run_has_nothing_of_is_discarded_with_a_line(tmp_path):
    import pytest

    from lowdim_sd.precompute_batches import leave_no_batch

    folder = _stopped_batch(tmp_path / ".batch-in-flight", ["a", "b"])
    with pytest.warns(UserWarning, match=r"discarded the stopped batch .*at step 4.*none of its identities"):
        leave_no_batch(folder, {"c"})
    assert not folder.exists()


def _shard(folder: Path, name: str, tensors: dict) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / name))


def test_a_nan_row_is_named_by_its_first_nonfinite_tensor(tmp_path):
    import torch

    from lowdim_sd.weight_shards import nonfinite_rows

    a, b = torch.zeros(3, 4), torch.zeros(3, 4)
    a[1, 2] = b[1, 0] = float("nan")  # row 1 (identity 'y') in both tensors: the first is named
    _shard(tmp_path, "s.safetensors", {"a.weight": a, "b.weight": b})
    entries = [{"shard": "s.safetensors", "row": row, "name": name} for row, name in enumerate("xyz")]
    assert nonfinite_rows(tmp_path, entries) == {"y": (tmp_path / "s.safetensors", "a.weight", 1)}


def test_train_hypernet_reads_each_weight_folders_rows_in_that_folder(tmp_path):
    from types import SimpleNamespace

    import pytest
    import torch

    from lowdim.errors import LowdimError
    from lowdim_sd.hypertrain_checks import check_weights_finite

    sound, damaged = torch.zeros(2, 3), torch.zeros(2, 3)
    damaged[1, 1] = float("inf")
    _shard(tmp_path / "w0", "s.safetensors", {"t": sound})
    _shard(tmp_path / "w1", "s.safetensors", {"t": damaged})
    entries = [{"folder": folder, "shard": "s.safetensors", "row": row, "name": f"{folder}-{row}"}
               for folder in (0, 1) for row in (0, 1)]
    with pytest.raises(LowdimError, match=r"w1.s\.safetensors: tensor .*row 1 \(identity .?1-1"):
        check_weights_finite(SimpleNamespace(folders=[tmp_path / "w0", tmp_path / "w1"], entries=entries))


def test_the_encoder_advice_is_the_default_again_after_a_job_names_its_own():
    from lowdim.hyper import encoder

    before = encoder._ENCODER_WORDS.get()
    with encoder.encoder_words('hyper={{"encoder": "{packaged}"}}', "tiny words"):
        assert encoder._ENCODER_WORDS.get()[1] == "tiny words"
    assert encoder._ENCODER_WORDS.get() == before


def test_train_hypernets_summary_counts_steps_and_says_from_where_only_on_a_resume():
    from types import SimpleNamespace

    from lowdim_cli.hyper_commands import _what_ran

    ran = SimpleNamespace(seconds=2.04, filled_bank=False, key_steps=0, start_step=5, losses=[0.1])
    assert _what_ran(ran, False) == "1 step in 2.0 s"
    assert _what_ran(ran, True) == "1 step in 2.0 s (from step 5)"
    ran.losses = [0.1, 0.2]
    assert _what_ran(ran, False) == "2 steps in 2.0 s"
    bank = SimpleNamespace(seconds=1.0, filled_bank=True, key_steps=30, start_step=0, losses=[])
    assert _what_ran(bank, False) == "retrieval bank filled after 30 key-embedding steps in 1.0 s"
    bank.key_steps = 0
    assert _what_ran(bank, False) == "retrieval bank filled in 1.0 s"


def test_a_link_loop_and_an_empty_file_are_said_as_what_they_are(tmp_path):
    from lowdim.file_reading import LINK_LOOP, is_empty, not_a_file

    loop = tmp_path / "loop.safetensors"
    loop.symlink_to(loop)
    assert not_a_file(loop) == LINK_LOOP
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    assert is_empty(empty) and not is_empty(loop) and not_a_file(empty) is None


def test_an_adapter_header_missing_a_required_record_names_it():
    from lowdim.file_fit import incomplete_metadata

    whole = {"space": "lidb", "space_config": "{}", "layers": "[]"}
    assert incomplete_metadata(whole) == ""
    for field in whole:
        assert incomplete_metadata({k: v for k, v in whole.items() if k != field}) == (
            f"incomplete metadata (no '{field}')")


def test_shows_trainable_params_row_groups_a_count_and_says_a_damaged_record():
    from lowdim_sd.adapter_info import params_text

    assert params_text({"num_params": "1234567"}) == "1,234,567"
    assert params_text({}) == "0"
    assert params_text({"num_params": "lots"}).startswith("unknown: the 'num_params' in the metadata is")


def test_only_a_file_under_the_name_diffusers_reads_is_called_a_parts_weights(tmp_path, monkeypatch):
    import shutil

    import lowdim_tinyfaces
    import torch

    from lowdim_sd import model_info
    from lowdim_sd.model_info import part_weights_info

    monkeypatch.setattr(model_info, "_as_part", lambda *args: "the part's weights")  # the pipeline's rows: slow

    shutil.copy(Path(lowdim_tinyfaces.__file__).parent / "model" / "model_index.json", tmp_path)
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                 "diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model.old.safetensors",
                 "diffusion_pytorch_model_backup.safetensors"):
        _shard(tmp_path / "unet", name, {"w": torch.zeros(2)})
    read = [name for name in sorted(path.name for path in (tmp_path / "unet").iterdir())
            if part_weights_info(tmp_path / "unet" / name, [], {}) is not None]
    assert read == ["diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                    "diffusion_pytorch_model.safetensors"]


def test_show_says_an_adapter_without_its_layer_list_has_an_unknown_count(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from torch import nn

    import lowdim
    from lowdim_sd.file_info import describe

    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4))
    lowdim.inject(net, lowdim.get_space("lora"), ["0", "2"])
    path = lowdim.save_adapter(tmp_path / "a.safetensors", net)
    with safe_open(str(path), framework="pt") as opened:
        tensors = {key: opened.get_tensor(key) for key in opened.keys()}  # noqa: SIM118
        metadata = dict(opened.metadata())
    assert dict(describe(path).rows)["layers"].startswith("2")
    del metadata["layers"]
    save_file({key: torch.as_tensor(value) for key, value in tensors.items()}, str(path), metadata)
    rows = dict(describe(path).rows)
    assert rows["layers"].startswith("? ") and rows["problem"] == "incomplete metadata (no 'layers')"


def _hyper_run_beside(tmp_path: Path, monkeypatch, images: list[str]) -> Path:
    """A train-hypernet --out (its network and split.json) beside a weight folder 'w' whose index names ``images``
    for the held-out identity 'b' (the index read as the real reader would give it)."""
    import json

    from lowdim_sd import hypernet_folders, weight_index

    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "hypernet.safetensors").write_bytes(b"x")
    (run / "split.json").write_text(json.dumps({"train": ["a"], "val": ["b"]}))
    (tmp_path / "w").mkdir(exist_ok=True)
    monkeypatch.setattr(hypernet_folders, "is_weight_folder", lambda folder: folder.name == "w")
    index = {"root": str(tmp_path / "faces"), "identities": [{"name": "b", "images": images}]}
    monkeypatch.setattr(weight_index, "read_index", lambda folder: index)
    return run / "hypernet.safetensors"


def test_a_held_out_picture_is_looked_for_under_the_index_root_only(tmp_path, monkeypatch):
    from lowdim_sd.hypernet_folders import held_out_picture

    (tmp_path / "faces" / "b").mkdir(parents=True)
    (tmp_path / "faces" / "b" / "1.png").write_bytes(b"png")
    outside = tmp_path / "secret.png"  # a stranger's index naming a file elsewhere on the machine
    outside.write_bytes(b"png")
    assert held_out_picture(_hyper_run_beside(tmp_path, monkeypatch, ["b/1.png"]), "w") == tmp_path / "faces/b/1.png"
    for image in (str(outside), "../secret.png"):  # suggested in the use line, it would read that file
        assert held_out_picture(_hyper_run_beside(tmp_path, monkeypatch, [image]), "w") is None, image


def test_a_parts_weight_files_are_its_files_not_a_folder_named_like_one(tmp_path, monkeypatch):
    import torch

    from lowdim_sd import model_info

    monkeypatch.setattr(model_info, "_as_part", lambda path, kind, name, pipeline, rows, values: values)
    _shard(tmp_path / "unet", "diffusion_pytorch_model.safetensors", {"w": torch.zeros(2)})
    (tmp_path / "unet" / "old.safetensors").mkdir()
    values = model_info.pipeline_part_info(tmp_path / "unet", tmp_path)
    assert [file["file"] for file in values["weight files"]] == ["diffusion_pytorch_model.safetensors"]


def test_a_recorded_weight_folder_that_is_a_path_is_not_looked_for(tmp_path, monkeypatch):
    # the file records its weight folder by its name alone: a path there is a stranger's, leading anywhere
    from lowdim_sd.hypernet_folders import held_out_picture

    (tmp_path / "faces" / "b").mkdir(parents=True)
    (tmp_path / "faces" / "b" / "1.png").write_bytes(b"png")
    file = _hyper_run_beside(tmp_path, monkeypatch, ["b/1.png"])
    assert held_out_picture(file, "w") is not None
    for weights in (str(tmp_path / "w"), "../w", ".."):
        assert held_out_picture(file, weights) is None, weights


def test_a_link_named_like_a_batch_folder_is_no_batch_of_this_precompute(tmp_path):
    from lowdim_sd.stopped_precompute_info import batch_folders

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / ".batch-in-flight").symlink_to(tmp_path / "elsewhere")  # the rerun removes a link, never follows it
    (tmp_path / ".batch-in-flight-p1").mkdir()
    assert batch_folders(tmp_path) == [tmp_path / ".batch-in-flight-p1"]


def test_a_resume_says_how_many_more_nan_rows_it_trains_again(tmp_path):
    from types import SimpleNamespace

    import pytest
    import torch

    from lowdim_sd.precompute_resume import forget_nonfinite

    rows = torch.zeros(3, 2)
    rows[0, 0] = rows[2, 1] = float("nan")
    _shard(tmp_path, "s.safetensors", {"t": rows})
    done = {name: {"shard": "s.safetensors", "row": row, "name": name} for row, name in enumerate("xyz")}
    own = {"identities": list(done.values())}
    with pytest.warns(UserWarning, match=r"identity 'x'\) \(and 1 other identity\); training them again"):
        kept, again = forget_nonfinite(dict(done), [SimpleNamespace(name=n) for n in "xyz"], tmp_path, own,
                                       tmp_path / "index.json")
    assert list(kept) == ["y"] and sorted(again) == ["x", "z"]


def test_show_says_a_batch_folder_whose_identities_the_index_holds_is_removed_by_the_rerun(tmp_path):
    from lowdim_sd.stopped_precompute_info import _batch

    folder = _stopped_batch(tmp_path / ".batch-in-flight", ["a", "b"])
    text, value = _batch(folder, {"a", "b"})
    assert "kept in the index already" in text and "the rerun removes it" in text and value["step"] == 0
    assert "4 of 10 steps kept" in _batch(folder, {"a"})[0]
