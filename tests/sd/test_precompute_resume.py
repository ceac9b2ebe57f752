"""``lowdim precompute`` resumed after a stop or a change of its input: changed pictures are trained again,
settings that do not change θ are accepted, the dtype and --init are recorded, --out inside --identities is
not an identity, the kept count is what is on disk, seeds never collide, and each process says its own share."""

from __future__ import annotations

import json
import shutil

import accelerate
import pytest
import torch
from fake_processes import FakeState  # tests/sd, on the path as pytest puts it
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
import lowdim_sd.precompute as pre
from lowdim_cli.errors import OUT_OF_MEMORY_HINT
from lowdim_cli.main import main
from lowdim_sd.modes import resolve_layers
from lowdim_sd.precompute import PrecomputeJob, precompute, read_index
from lowdim_sd.train import TrainConfig
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")


def job(tiny_sd, people, out, **kwargs) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=people, out=out,
                         **{"config": TrainConfig(steps=1), "batch_subjects": 2, "crop": False, **kwargs})


def picture(path, seed: int) -> None:
    """Another face (random pixels of ``seed``) written over ``path``."""
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    path.unlink(missing_ok=True)
    shutil.move(save_images(image, path.parent, "tmp-new")[0], path)


def entries(out) -> dict:
    return {entry["name"]: entry for entry in read_index(out)["identities"]}


# ------------------------------------------------------------------------------- A1: changed pictures


def test_a_done_identity_whose_pictures_changed_is_trained_again_and_replaces_its_row(tiny_sd, people, tmp_path,
                                                                                      model):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    before = entries(out)
    picture(people / "person0" / "img_001.png", 70)  # the second picture: the first one's digest alone misses it
    picture(people / "person1" / "img_001.png", 71)  # added
    with pytest.warns(UserWarning, match=r"^2 done identities changed since they were precomputed \(person0: "
                                         r"img_001.png changed, person1: img_001.png added\); training them again$"):
        result = precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert result.trained == ["person0", "person1"] and result.skipped == ["person2"]
    after = entries(out)
    assert sorted(after) == ["person0", "person1", "person2"] and after["person2"] == before["person2"]
    assert after["person1"]["images"] == ["person1/img_000.png", "person1/img_001.png"]
    assert after["person0"]["shard"] != before["person0"]["shard"] and len(after["person0"]["digests"]) == 2
    WeightDataset(out).check_same_pictures()  # train-hypernet now accepts the folder
    (people / "person0" / "img_001.png").unlink()  # removed
    with pytest.warns(UserWarning, match=r"person0: img_001.png removed since it was precomputed; training it "
                                         r"again"):
        assert precompute(job(tiny_sd, people, out), progress=False, model=model).trained == ["person0"]
    assert precompute(job(tiny_sd, people, out), progress=False, model=model).trained == []  # nothing new


def test_an_identity_trained_again_leaves_one_entry_and_its_old_shard_goes(tiny_sd, people, tmp_path, model,
                                                                          monkeypatch):
    """Its old entry leaves the index as soon as it is sent back to training: a stop before then leaves it simply
    not done, and once trained again the old weights of the person are not kept beside the new ones."""
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out, batch_subjects=1), progress=False, model=model)  # a shard each
    old = entries(out)["person0"]["shard"]
    picture(people / "person0" / "img_000.png", 77)

    real = pre.train

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pre, "train", stopped)
    # The stop's line counts what the earlier run kept: a resume stopped in its first batch did not lose them.
    with pytest.warns(UserWarning, match="person0: img_000.png changed"), pytest.raises(
            KeyboardInterrupt, match=r"with 0 identities trained in this run; 2 are kept in .*continue"):
        precompute(job(tiny_sd, people, out, batch_subjects=1), progress=False, model=model)
    assert sorted(entries(out)) == ["person1", "person2"]  # not done, not its old weights
    assert not (out / old).exists()
    monkeypatch.setattr(pre, "train", real)
    assert precompute(job(tiny_sd, people, out, batch_subjects=1), progress=False, model=model).trained == ["person0"]
    raw = json.loads((out / "index.json").read_text())["identities"]
    assert sorted(entry["name"] for entry in raw) == ["person0", "person1", "person2"]  # once each
    WeightDataset(out).check_same_pictures()


def test_an_index_that_recorded_only_the_first_digest_resumes_comparing_that(tiny_sd, people, tmp_path, model):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    index = json.loads((out / "index.json").read_text())
    for entry in index["identities"]:
        del entry["digests"]  # as lowdim wrote it before per-image digests
    (out / "index.json").write_text(json.dumps(index))
    assert precompute(job(tiny_sd, people, out), progress=False, model=model).trained == []
    picture(people / "person0" / "img_001.png", 72)  # not recorded: cannot be told
    assert precompute(job(tiny_sd, people, out), progress=False, model=model).trained == []
    picture(people / "person1" / "img_000.png", 73)
    with pytest.warns(UserWarning, match="person1: img_000.png changed"):
        assert precompute(job(tiny_sd, people, out), progress=False, model=model).trained == ["person1"]


def test_a_retrained_identity_in_another_processes_part_wins_over_its_old_row(tiny_sd, people, tmp_path, model,
                                                                             monkeypatch):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)  # all three in index.json
    picture(people / "person1" / "img_000.png", 74)
    monkeypatch.setattr(accelerate, "PartialState", lambda **_: FakeState(1))  # person1 is process 2's
    with pytest.warns(UserWarning, match="person1: img_000.png changed"):
        assert precompute(job(tiny_sd, people, out), progress=False, model=model).trained == ["person1"]
    assert entries(out)["person1"]["shard"] == "shard-p1-00000.safetensors"  # index.json's old row is passed over
    WeightDataset(out).check_same_pictures()


def test_train_hypernet_sends_a_changed_picture_back_to_a_precompute_that_can_help(tiny_sd, people, tmp_path, model):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    picture(people / "person0" / "img_001.png", 75)  # the second picture, which train-hypernet did not check
    with pytest.raises(lowdim.LowdimError, match="are not those their weights were trained on") as refused:
        WeightDataset(out).check_same_pictures()
    said = str(refused.value)
    assert "img_001.png" in said and f"rerun the lowdim precompute that made {out}" in said
    assert "precompute these pictures" not in said


# ------------------------------------------------------------------------------ A2, A3, A5: settings


def test_gradient_checkpointing_does_not_block_a_resume(tiny_sd, people, tmp_path, model, monkeypatch):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out, limit=1), progress=False, model=model)
    assert "gradient_checkpointing" not in read_index(out)["config"]
    index = json.loads((out / "index.json").read_text())
    index["config"]["gradient_checkpointing"] = False  # as older indexes recorded it
    (out / "index.json").write_text(json.dumps(index))
    checkpointed = job(tiny_sd, people, out, config=TrainConfig(steps=1, gradient_checkpointing=True))
    assert precompute(checkpointed, progress=False, model=model).skipped == ["person0"]
    # A process's new part, made without it, still merges with the older index.json that recorded it.
    index["identities"] = index["identities"][:1]
    (out / "index.json").write_text(json.dumps(index))
    monkeypatch.setattr(accelerate, "PartialState", lambda **_: FakeState(1))
    assert precompute(checkpointed, progress=False, model=model).trained == ["person1"]
    assert sorted(entries(out)) == ["person0", "person1"]
    assert "--gradient-checkpointing" in OUT_OF_MEMORY_HINT and "resumes" in OUT_OF_MEMORY_HINT


def test_the_dtype_is_recorded_and_a_resume_in_another_is_refused_saying_which_to_pass(tiny_sd, people, tmp_path,
                                                                                      model, monkeypatch):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out, limit=1), progress=False, model=model)
    assert read_index(out)["dtype"] == "fp32"
    index = json.loads((out / "index.json").read_text())
    index["dtype"] = "bf16"  # as a run on another machine would have made it
    (out / "index.json").write_text(json.dumps(index))
    monkeypatch.setattr("lowdim_sd.loading.load_sd", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(lowdim.LowdimError, match=r"trained in bf16, and this run would train in fp32: pass "
                                                 r"dtype='bf16' to continue"):  # from Python: the field
        precompute(job(tiny_sd, people, out), progress=False)
    del index["dtype"]  # a folder made before the dtype was recorded: nothing to compare
    (out / "index.json").write_text(json.dumps(index))
    assert precompute(job(tiny_sd, people, out), progress=False, model=model).skipped == ["person0"]


def test_init_is_recorded_by_path_and_the_resume_error_names_it_and_defaults_by_name(tiny_sd, people, tmp_path,
                                                                                    model, monkeypatch):
    adapter = lowdim.inject(model.modules, lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    start = lowdim.save_adapter(tmp_path / "start.safetensors", adapter)
    adapter.delete("default")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out, limit=1, init="start.safetensors"), progress=False, model=model)
    assert read_index(out)["init_path"] == {"given": "start.safetensors", "resolved": str(start.resolve())}
    # from Python: PrecomputeJob's fields, not the index's config.init
    with pytest.raises(lowdim.LowdimError, match=rf"other settings: init='{start.resolve()}' there, no init now;"):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    plain = tmp_path / "p"
    precompute(job(tiny_sd, people, plain, limit=1), progress=False, model=model)
    cases = [({"shared_noise": True}, r"PrecomputeJob\(shared_noise=\.\.\.\) \(off there, on now\)"),
             ({"config": TrainConfig(steps=1, optimizer="sgd")},
              r"TrainConfig\(optimizer=\.\.\.\) \('adamw' there, 'sgd' now\)"),
             ({"init": start}, rf"other settings: no init there, init='{start.resolve()}' now;")]
    for options, said in cases:
        with pytest.raises(lowdim.LowdimError, match=said):
            precompute(job(tiny_sd, people, plain, **options), progress=False)
    # `lowdim show` names each setting the resume compares, --init by its file, so a user can rerun with them
    from lowdim_sd.file_info import describe

    made, zero = dict(describe(out).rows), dict(describe(plain).rows)
    assert made["training: init"] == str(start.resolve()) and zero["training: init"] == "none (from zero)"
    assert (zero["training: optimizer"], zero["training: shared_noise"], zero["training: dtype"]) == \
        ("adamw", "off", "fp32")
    index = json.loads((out / "index.json").read_text())
    del index["init_path"]  # a folder made before the path was recorded: its digest is all there is
    (out / "index.json").write_text(json.dumps(index))
    digest = index["config"]["init"][:12]
    assert dict(describe(out).rows)["training: init"].startswith(f"an --init file of digest {digest}")


# ---------------------------------------------------------------------------- A4: --out inside --identities


def test_an_out_inside_the_identities_is_not_an_identity(tiny_sd, people, tmp_path, model, capsys, monkeypatch):
    result = precompute(job(tiny_sd, people, people / "weights"), progress=False, model=model)
    assert result.trained == ["person0", "person1", "person2"]
    flat = tmp_path / "flat"
    save_images(torch.rand(2, 3, 16, 16) * 2 - 1, flat, "face")
    monkeypatch.chdir(flat)  # `cd photos && lowdim precompute -i .`, with the default -o weights
    code = main(["precompute", "-m", str(tiny_sd), "-i", ".", "--steps", "1", "--no-crop", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "trained 2 identities" in captured.out and "ignored" not in captured.err
    assert sorted(entries(flat / "weights")) == ["face_000", "face_001"]


# -------------------------------------------------------------------------------- A6: the kept count


def test_a_stop_before_the_index_names_a_shard_counts_what_is_on_disk_and_the_resume_removes_it(
        tiny_sd, people, tmp_path, model, monkeypatch):
    out = tmp_path / "w"
    real, calls = pre.write_json, []

    def stopped_on_the_second(path, payload):  # a signal landing while the second batch's index is written
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, payload)

    monkeypatch.setattr(pre, "write_json", stopped_on_the_second)
    with pytest.raises(KeyboardInterrupt, match="with 1 identity trained in this run; 1 is kept in"):
        precompute(job(tiny_sd, people, out, batch_subjects=1), progress=False, model=model)
    assert (out / "shard-00001.safetensors").is_file()  # whole, but no index names it
    monkeypatch.setattr(pre, "write_json", real)
    (out / "shard-00007.safetensors").write_bytes(b"another tool's file")  # not a shard: stays
    said = []
    monkeypatch.setattr(pre, "_say", lambda progress, line: said.append(line))
    result = precompute(job(tiny_sd, people, out, batch_subjects=1), progress=True, model=model)
    assert result.trained == ["person1", "person2"]
    assert any("removed 1 shard no index names" in line and "shard-00001" in line for line in said)
    named = {entry["shard"] for entry in read_index(out)["identities"]}
    assert {path.name for path in out.glob("shard-*")} == named | {"shard-00007.safetensors"}


# ------------------------------------------------------------------------------------------ A7: seeds


def test_an_identity_added_before_the_others_draws_a_seed_of_its_own(tiny_sd, people, tmp_path, model):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    old = {name: entry["seed"] for name, entry in entries(out).items()}
    (people / "aaa").mkdir()  # sorts first: it takes position 0, whose seed person0 has
    picture(people / "aaa" / "img_000.png", 76)
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    seeds = {name: entry["seed"] for name, entry in entries(out).items()}
    assert len(set(seeds.values())) == 4 and {name: seeds[name] for name in old} == old
    # The seed is the name's, so an uninterrupted run gives it the same.
    precompute(job(tiny_sd, people, tmp_path / "fresh"), progress=False, model=model)
    assert {name: entry["seed"] for name, entry in entries(tmp_path / "fresh").items()} == seeds


def test_another_run_seed_gives_every_identity_other_draws(tiny_sd, people, tmp_path, model):
    # A seed ablation compares runs that share no noise, timesteps or augmentations.
    seeds = []
    for seed in (0, 1):
        precompute(job(tiny_sd, people, tmp_path / f"w{seed}", config=TrainConfig(steps=1, seed=seed)),
                   progress=False, model=model)
        seeds.append({name: entry["seed"] for name, entry in entries(tmp_path / f"w{seed}").items()})
    assert seeds[0].keys() == seeds[1].keys() == {"person0", "person1", "person2"}
    assert all(seeds[0][name] != seeds[1][name] for name in seeds[0])


# ---------------------------------------------------------------------------------- A8: several processes


def test_a_process_stopped_in_its_first_batch_says_it_kept_nothing_not_that_the_run_did(tiny_sd, people, tmp_path,
                                                                                       model, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pre, "train", interrupted)
    for rank in (1, 0):
        monkeypatch.setattr(accelerate, "PartialState", lambda rank=rank, **_: FakeState(rank))
        with pytest.raises(KeyboardInterrupt) as stopped:
            precompute(job(tiny_sd, people, tmp_path / "w"), progress=False, model=model)
        said = str(stopped.value)
        assert f"first batch of process {rank + 1} of 2, so it added nothing" in said and "continue" in said
        assert "start over" not in said and "nothing was kept" not in said


def test_a_process_leaves_the_shards_another_process_has_not_indexed_yet(tmp_path):
    """Under `accelerate launch`, another process may have written its shard and not yet its index line: the
    resume's orphan sweep in this process must leave that shard, or the other's index names a missing file."""
    from safetensors.torch import save_file

    from lowdim_sd.precompute_resume import remove_orphan_shards
    from lowdim_sd.weight_index import FORMAT

    def shards() -> list[str]:
        return sorted(path.name for path in tmp_path.glob("shard-*"))

    for name in ("shard-p0-000003.safetensors", "shard-p1-000000.safetensors", "shard-00002.safetensors"):
        save_file({"x": torch.zeros(1, 2)}, str(tmp_path / name), metadata={"format": FORMAT + ".shard"})
    assert remove_orphan_shards(tmp_path, rank=1, processes=2) == ["shard-p1-000000.safetensors"]
    assert shards() == ["shard-00002.safetensors", "shard-p0-000003.safetensors"]
    # The main process takes its own and the plain ones no process of such a run writes.
    assert remove_orphan_shards(tmp_path, rank=0, processes=2) == ["shard-00002.safetensors",
                                                                    "shard-p0-000003.safetensors"]
    assert shards() == []


def test_a_resume_with_nothing_left_to_train_records_where_the_identities_moved(tiny_sd, people, tmp_path, model):
    """No batch writes the index then: the move itself must be written, or train-hypernet looks for the pictures
    where they no longer are and every resume says the folder moved again."""
    precompute(job(tiny_sd, people, tmp_path / "w"), progress=False, model=model)
    moved = people.rename(tmp_path / "moved")
    assert precompute(job(tiny_sd, moved, tmp_path / "w"), progress=False, model=model).trained == []
    assert read_index(tmp_path / "w")["root"] == str(moved.resolve()) and len(WeightDataset(tmp_path / "w")) == 3
