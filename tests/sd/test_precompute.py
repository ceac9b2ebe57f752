"""``lowdim precompute`` (phase 0): shards + index, resume, WeightDataset, bad input (several processes:
test_precompute_processes.py)."""

from __future__ import annotations

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
import lowdim_sd.face_inputs as face_inputs
import lowdim_sd.faces as faces
import lowdim_sd.precompute as pre
from lowdim_cli.main import main
from lowdim_sd.face_inputs import load_face_image
from lowdim_sd.images import ImageError, load_references
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.precompute import PrecomputeJob, precompute, read_index
from lowdim_sd.train import Subject, TrainConfig, train
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")


def job(tiny_sd, people, out, **kwargs) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=people, out=out,
                         **{"config": TrainConfig(steps=2), "batch_subjects": 2, "crop": False, **kwargs})


def test_writes_shards_and_an_index_whose_rows_are_the_batched_training_result(tiny_sd, people, tmp_path, model):
    result = precompute(job(tiny_sd, people, tmp_path / "w"), progress=False, model=model)
    assert [p.name for p in result.shards] == ["shard-00000.safetensors", "shard-00001.safetensors"]
    index = read_index(tmp_path / "w")
    assert index["space"] == "lidb" and index["layer_set"] == "unet+text" and index["model"] == str(tiny_sd)
    assert [(e["name"], e["shard"], e["row"]) for e in index["identities"]] == [
        ("person0", "shard-00000.safetensors", 0), ("person1", "shard-00000.safetensors", 1),
        ("person2", "shard-00001.safetensors", 0)]
    assert index["identities"][0]["images"] == ["person0/img_000.png", "person0/img_001.png"]

    # The same two identities trained again by hand, as `lowdim train --subjects` would, with their seeds.
    names = ["person0", "person1"]
    seeds = [entry["seed"] for entry in index["identities"][:2]]
    assert seeds == [pre.identity_seed(0, name, False) for name in names]  # the name's, not the position's
    subjects = [Subject(load_references(people / name, 16), seed) for seed, name in zip(seeds, names, strict=True)]
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None), subject_names=names)
    train(model, subjects, trainable, TrainConfig(steps=2, learning_rate=2e-3), progress=False)
    expected = trainable.state()
    lowdim.Adapters(model.modules).delete(trainable.name)

    dataset = WeightDataset(tmp_path / "w")
    assert dataset.names == ["person0", "person1", "person2"] and len(dataset) == 3
    assert [layer.name for layer in dataset.layers] == [e[0] for e in index["layers"]]
    for row in range(2):
        image, weights = dataset[row]
        assert image.shape == (3, 16, 16)
        assert {f"{layer}/{param}" for layer, p in weights.items() for param in p} == set(expected)
        for layer, params in weights.items():
            for param, value in params.items():
                assert torch.equal(value, expected[f"{layer}/{param}"][row])
    assert sum(float(v.abs().sum()) for p in dataset[2][1].values() for v in p.values()) > 0
    assert len(WeightDataset(tmp_path / "w", all_images=True)) == 4


def test_resume_skips_identities_already_done(tiny_sd, people, tmp_path, model, monkeypatch):
    calls = []
    real = pre.train
    monkeypatch.setattr(pre, "train", lambda model, subjects, *a, **k: calls.append(len(subjects)) or real(
        model, subjects, *a, **k))
    first = precompute(job(tiny_sd, people, tmp_path / "w", limit=2), progress=False, model=model)
    stamp = first.shards[0].stat().st_mtime_ns
    second = precompute(job(tiny_sd, people, tmp_path / "w"), progress=False, model=model)
    assert calls == [2, 1] and second.trained == ["person2"] and second.skipped == ["person0", "person1"]
    assert first.shards[0].stat().st_mtime_ns == stamp
    assert [e["name"] for e in read_index(tmp_path / "w")["identities"]] == ["person0", "person1", "person2"]
    assert precompute(job(tiny_sd, people, tmp_path / "w"), progress=False, model=model).trained == []
    with pytest.raises(lowdim.LowdimError, match="other settings.*space"):
        precompute(job(tiny_sd, people, tmp_path / "w", space="lora"), progress=False, model=model)


def test_the_index_records_every_training_option_and_resumes_only_with_the_same(tiny_sd, people, tmp_path, model):
    precompute(job(tiny_sd, people, tmp_path / "w", limit=1), progress=False, model=model)
    index = read_index(tmp_path / "w")
    # The layout precompute has always written: TrainConfig's fields (less checkpointing) and the crop.
    # A new TrainConfig field lands here too, and older folders then refuse to resume unless
    # _done_identities back-fills it (as it does the crop): update this knowingly.
    assert index["config"] == {
        "steps": 2, "learning_rate": 2e-3, "batch_size": 1, "grad_accum": 1, "prompt": "a [V] face", "token": "sks",
        "seed": 0, "augment": True, "mixed_precision": "no", "max_grad_norm": 1.0,
        "weight_decay": 0.0, "crop": False, "crop_margin": None, "face_index": None}
    assert index["seed"] == 0 and index["dtype"] == "fp32"  # beside config: a resume refuses another one too
    # Checkpointing never applies to precompute (no output folder), so it does not block resuming.
    again = job(tiny_sd, people, tmp_path / "w", config=TrainConfig(steps=2, checkpoint_every=5))
    assert precompute(again, progress=False, model=model).skipped == ["person0"]
    # Any other option is a setting, including those the CLI leaves at their default.
    other = job(tiny_sd, people, tmp_path / "w", config=TrainConfig(steps=2, weight_decay=0.1))
    with pytest.raises(lowdim.LowdimError, match=r"other settings: TrainConfig\(weight_decay=\.\.\.\) \(0.0 there, "
                                                 r"0.1 now\);"):  # from Python: the field the user set
        precompute(other, progress=False, model=model)
    with pytest.raises(lowdim.LowdimError, match="other settings.*seed"):
        precompute(job(tiny_sd, people, tmp_path / "w", config=TrainConfig(steps=2, seed=1)), progress=False,
                   model=model)


def test_a_flat_folder_is_one_identity_per_image(tiny_sd, tmp_path, model):
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    save_images(images, tmp_path / "flat", "face")
    precompute(job(tiny_sd, tmp_path / "flat", tmp_path / "w", batch_subjects=8), progress=False, model=model)
    dataset = WeightDataset(tmp_path / "w")
    assert dataset.names == ["face_000", "face_001", "face_002"]
    assert {e["shard"] for e in dataset.index["identities"]} == {"shard-00000.safetensors"}


def test_the_dataset_crops_each_image_once(tiny_sd, people, tmp_path, model, monkeypatch):
    crops = []

    def crop_face(image, size, margin, index, name, **hints):  # stands in for the detector: counts its calls
        crops.append(name)
        return image.resize((size, size))

    monkeypatch.setattr(faces, "crop_face", crop_face)
    monkeypatch.setattr(face_inputs, "faces_available", lambda: True)
    precompute(job(tiny_sd, people, tmp_path / "w", crop=True), progress=False, model=model)
    dataset = WeightDataset(tmp_path / "w", all_images=True)
    crops.clear()
    for _ in range(2):  # two epochs
        images = [dataset[item][0] for item in range(len(dataset))]
    paths = sorted(str(path.resolve()) for path in people.glob("*/*.png"))
    assert sorted(crops) == paths and len(paths) == 4  # once per image, not per read
    for image, path in zip(images, paths, strict=True):  # the cached pixels are the crop, exactly
        assert torch.equal(image, load_face_image(path, 16, crop=True, margin=0.6))


def test_the_crop_cache_keeps_to_its_memory_budget(tiny_sd, people, tmp_path, model, monkeypatch):
    crops = []

    def crop_face(image, size, margin, index, name, **hints):
        crops.append(name)
        return image.resize((size, size))

    monkeypatch.setattr(faces, "crop_face", crop_face)
    monkeypatch.setattr(face_inputs, "faces_available", lambda: True)
    precompute(job(tiny_sd, people, tmp_path / "w", crop=True), progress=False, model=model)
    crop_bytes = 16 * 16 * 3
    dataset = WeightDataset(tmp_path / "w", all_images=True, crop_cache_bytes=2 * crop_bytes)
    crops.clear()
    first = dataset[0][0]
    assert torch.equal(dataset[0][0], first) and len(crops) == 1  # a hit
    for item in range(len(dataset)):
        dataset[item]
    assert len(dataset._crops) == 2 and dataset._crops.bytes == 2 * crop_bytes  # the two most recent stay
    crops.clear()
    assert torch.equal(dataset[0][0], first) and len(crops) == 1  # dropped, so cropped again, alike
    assert torch.equal(dataset[3][0], dataset[3][0]) and len(crops) == 1  # still cached
    none_kept = WeightDataset(tmp_path / "w", crop_cache_bytes=0)
    assert torch.equal(none_kept[0][0], first) and len(none_kept._crops) == 0


def test_bad_inputs_are_one_line_errors(tiny_sd, tmp_path, model, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(lowdim.LowdimError, match="no identities"):
        precompute(job(tiny_sd, tmp_path / "empty", tmp_path / "w"), progress=False, model=model)
    (tmp_path / "bad" / "someone").mkdir(parents=True)
    (tmp_path / "bad" / "someone" / "face.png").write_bytes(b"not a picture")
    with pytest.raises(ImageError, match="face.png is not a readable image") as caught:
        precompute(job(tiny_sd, tmp_path / "bad", tmp_path / "w"), progress=False, model=model)
    assert "\n" not in str(caught.value)
    with pytest.raises(lowdim.LowdimError, match="not a weight dataset"):
        WeightDataset(tmp_path / "empty")
    code = main(["precompute", "-m", str(tiny_sd), "-i", str(tmp_path / "nowhere"), "-o", str(tmp_path / "w")])
    assert code == 1 and "no such folder of identities" in capsys.readouterr().err
    for option, value in (("--limit", -1), ("--batch-subjects", 0), ("--steps", 0)):
        code = main(["precompute", "-m", str(tiny_sd), "-i", str(tmp_path / "bad"), "-o", str(tmp_path / "w"),
                     option, str(value)])
        assert code == 1 and f"{option} must be at least 1, got {value}" in capsys.readouterr().err
    code = main(["precompute", "-m", str(tiny_sd), "-i", str(tmp_path / "bad"), "-o", str(tmp_path / "w"), "--space",
                 "stack"])
    assert code == 1 and "--space stack has frozen params, which no hypernetwork predicts" in " ".join(
        capsys.readouterr().err.split())
    assert not (tmp_path / "w").exists()


def test_cli_precompute(tiny_sd, people, tmp_path, capsys):
    code = main(["precompute", "-m", str(tiny_sd), "-i", str(people), "-o", str(tmp_path / "w"), "--steps", "1",
                 "--no-crop", "--batch-subjects", "2", "--device", "cpu"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "trained 3 identities into 2 shards" in text and len(WeightDataset(tmp_path / "w")) == 3
    assert "batch 1 of 2: identities 1-2 of 3\n" in text and "batch 2 of 2: identity 3 of 3, about" in text


def test_each_batch_line_says_how_long_the_rest_takes_at_the_pace_so_far():
    assert pre._batch_line(0, 8, 8, 100, 0, 0.0) == "batch 1 of 13: identities 1-8 of 100"  # no pace yet
    # 16 identities in 8 minutes: the other 84 take 42.
    assert pre._batch_line(16, 8, 8, 100, 5, 480.0) == "batch 3 of 13: identities 17-24 of 100, 5 done before, " \
                                                       "about 42 min left"
    assert pre._batch_line(2, 1, 1, 3, 0, 4.0) == "batch 3 of 3: identity 3 of 3, about 2 s left"
    assert pre._batch_line(100, 100, 100, 1000, 0, 3600.0).endswith("about 9.0 h left")


def test_a_resume_follows_identities_whose_folder_moved(tiny_sd, people, tmp_path, model, monkeypatch):
    first = job(tiny_sd, people, tmp_path / "w", limit=2)
    precompute(first, progress=False, model=model)
    moved = people.rename(tmp_path / "moved")
    result = precompute(job(tiny_sd, moved, tmp_path / "w"), progress=False, model=model)
    assert result.skipped == ["person0", "person1"] and result.trained == ["person2"]
    index = read_index(tmp_path / "w")
    assert index["root"] == str(moved.resolve()) and len(WeightDataset(tmp_path / "w")) == 3


def test_a_resume_from_another_folder_of_identities_is_refused(tiny_sd, people, tmp_path, model):
    precompute(job(tiny_sd, people, tmp_path / "w", limit=1), progress=False, model=model)
    other = tmp_path / "other"
    (other / "person0").mkdir(parents=True)  # the same names, but the first folder is still there
    for image in (people / "person0").iterdir():
        (other / "person0" / image.name).write_bytes(image.read_bytes())
    with pytest.raises(lowdim.LowdimError, match="holds weights of the identities in .*people"):
        precompute(job(tiny_sd, other, tmp_path / "w"), progress=False, model=model)


def test_shared_noise_gives_identical_images_identical_weights_and_is_recorded(tiny_sd, tmp_path, model):
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    for name in ("a", "b"):  # two identities with the same picture: only their noise seeds differ
        save_images(image, tmp_path / "twins" / name, "img")
    shared = precompute(job(tiny_sd, tmp_path / "twins", tmp_path / "s", shared_noise=True), progress=False,
                        model=model)
    apart = precompute(job(tiny_sd, tmp_path / "twins", tmp_path / "p"), progress=False, model=model)
    for result, same in ((shared, True), (apart, False)):
        data = WeightDataset(result.index.parent)
        first, second = data.weights(0), data.weights(1)
        equal = all(torch.equal(first[layer][k], second[layer][k]) for layer in first for k in first[layer])
        assert equal is same
    index = read_index(tmp_path / "s")
    assert index["config"]["shared_noise"] is True and {e["seed"] for e in index["identities"]} == {0}
    assert "shared_noise" not in read_index(tmp_path / "p")["config"]  # older folders still resume
    with pytest.raises(lowdim.LowdimError, match="other settings|differ"):
        precompute(job(tiny_sd, tmp_path / "twins", tmp_path / "s"), progress=False, model=model)


def test_init_starts_every_identity_from_an_adapter_file(tiny_sd, people, tmp_path, model, monkeypatch):
    import copy

    from lowdim.injection.select import exact_layers

    first = precompute(job(tiny_sd, people, tmp_path / "w"), progress=False, model=model)
    data = WeightDataset(first.index.parent)
    holder = copy.deepcopy(model.modules)
    adapters = lowdim.inject(holder, data.space, exact_layers("file", [layer.name for layer in data.layers]),
                             seed=int(data.index["seed"]))
    adapters.load_tensors("default", data.weights(0))
    start = lowdim.save_adapter(tmp_path / "start.safetensors", holder)
    starts = []
    real = pre.train
    monkeypatch.setattr(pre, "train", lambda model, subjects, trainable, *a, **k: starts.append(
        {key: value.clone() for key, value in trainable.state().items()}) or real(model, subjects, trainable, *a,
                                                                                     **k))
    precompute(job(tiny_sd, people, tmp_path / "warm", init=start), progress=False, model=model)
    expected = adapters.tensors("default")
    layer, param = next((layer, k) for layer, p in expected.items() for k in p)
    for state in starts:
        rows = state[f"{layer}/{param}"]
        rows = rows if rows.dim() > expected[layer][param].dim() else rows[None]
        assert all(torch.equal(row, expected[layer][param]) for row in rows)
    assert starts and lowdim.Adapters(model.modules).names() == []  # the probe adapter is gone again


def test_init_starts_every_identity_from_a_folders_mean(tiny_sd, people, tmp_path, model, monkeypatch):
    from lowdim_sd.hypertrain_io import all_targets

    first = precompute(job(tiny_sd, people, tmp_path / "w"), progress=False, model=model)
    mean = {layer: {k: v.mean(0) for k, v in p.items()} for layer, p in all_targets(WeightDataset(
        first.index.parent)).items()}
    starts = []
    real = pre.train
    monkeypatch.setattr(pre, "train", lambda model, subjects, trainable, *a, **k: starts.append(
        {key: value.clone() for key, value in trainable.state().items()}) or real(model, subjects, trainable, *a,
                                                                                     **k))
    precompute(job(tiny_sd, people, tmp_path / "warm", init=tmp_path / "w"), progress=False, model=model)
    layer, param = next((layer, k) for layer, p in mean.items() for k in p)
    for state in starts:  # every row of every batch began at the mean
        rows = state[f"{layer}/{param}"]
        rows = rows if rows.dim() > mean[layer][param].dim() else rows[None]
        assert all(torch.allclose(row, mean[layer][param]) for row in rows)
    assert len(read_index(tmp_path / "warm")["config"]["init"]) == 64
    other = precompute(job(tiny_sd, people, tmp_path / "x", space_options={"a": 4}), progress=False, model=model)
    with pytest.raises(lowdim.LowdimError, match=r"PrecomputeJob\(init='.*'\): its space differs"):
        precompute(job(tiny_sd, people, tmp_path / "y", init=other.index.parent), progress=False, model=model)


def test_other_people_under_the_same_names_do_not_pass_for_a_moved_folder(tiny_sd, people, tmp_path, model):
    precompute(job(tiny_sd, people, tmp_path / "w", limit=1), progress=False, model=model)
    others = tmp_path / "others"
    for number in range(3):  # the same layout and file names, other faces
        images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(50 + number)) * 2 - 1
        save_images(images, others / f"person{number}", "img")
    for image in (people / "person0").iterdir():  # person0 had two images: keep the layout alike
        (others / "person0" / image.name).write_bytes((others / "person0" / "img_000.png").read_bytes())
    import shutil

    shutil.rmtree(people)  # the old folder is gone, as after a move
    with pytest.raises(lowdim.LowdimError, match="holds weights of the identities in .*people"):
        precompute(job(tiny_sd, others, tmp_path / "w"), progress=False, model=model)


def test_another_settings_folder_or_a_bad_init_is_refused_before_the_model_loads(tiny_sd, people, tmp_path, model,
                                                                                 monkeypatch):
    precompute(job(tiny_sd, people, tmp_path / "w", limit=1), progress=False, model=model)
    adapter = lowdim.inject(model.modules, lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    start = lowdim.save_adapter(tmp_path / "start.safetensors", adapter)
    adapter.delete("default")
    monkeypatch.setattr("lowdim_sd.loading.load_sd", lambda *a, **k: pytest.fail("the model was loaded"))
    cases = [
        (job(tiny_sd, people, tmp_path / "w", config=TrainConfig(steps=5)),
         r"other settings: TrainConfig\(steps=\.\.\.\) \(2 there"),
        (job(tiny_sd, people, tmp_path / "w", space="lora"),
         r"other settings: PrecomputeJob\(space=\.\.\.\) \('lidb' there, 'lora' now\);"),
        (job(tiny_sd, people, tmp_path / "n", init=tmp_path / "missing.safetensors"), "no such adapter file"),
        (job(tiny_sd, people, tmp_path / "n", init=tmp_path / "n"), "index.json"),  # no weight folder
        (job(tiny_sd, people, tmp_path / "n", init=start, config=TrainConfig(steps=2, seed=3)),
         r"PrecomputeJob\(init='.*start.safetensors'\): its seed differs from this precompute's \(0 against 3\)"),
        (job(tiny_sd, people, tmp_path / "n", init=tmp_path / "w", config=TrainConfig(steps=2, seed=3)),
         r"PrecomputeJob\(init='.*w'\): its seed differs from this precompute's \(0 against 3\)"),  # a folder's
        (job(tiny_sd, people, tmp_path / "w", init=start),
         r"other settings: no init there, init='.*start.safetensors' now;"),
    ]
    (tmp_path / "n").mkdir()
    for bad, said in cases:
        with pytest.raises(lowdim.LowdimError, match=said):
            precompute(bad, progress=False)
    assert [entry["name"] for entry in read_index(tmp_path / "w")["identities"]] == ["person0"]  # untouched


def test_a_rerun_with_the_same_init_resumes(tiny_sd, people, tmp_path, model):
    adapter = lowdim.inject(model.modules, lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    start = lowdim.save_adapter(tmp_path / "start.safetensors", adapter)
    adapter.delete("default")
    precompute(job(tiny_sd, people, tmp_path / "w", limit=1, init=start), progress=False, model=model)
    again = precompute(job(tiny_sd, people, tmp_path / "w", init=start), progress=False, model=model)
    assert again.skipped == ["person0"] and again.trained == ["person1", "person2"]
