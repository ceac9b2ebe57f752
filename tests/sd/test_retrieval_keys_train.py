"""``train-hypernet --set architecture=retrieval --set key_dim=N --key-pairs PEOPLE``: learned keys end to end."""

from __future__ import annotations

import json
import re

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim.hyper import load_hypernet
from lowdim.hyper.storage import read_hypernet
from lowdim_cli.main import main
from lowdim_sd.feature_file import compute_features, save_features
from lowdim_sd.hypertrain import HyperTrainJob, train_hypernet
from lowdim_sd.weight_dataset import WeightDataset

TINY_VIT = {"model_type": "vit", "image_size": 16, "patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32}
KEYED = {"encoder_config": TINY_VIT, "architecture": "retrieval", "key_dim": 4, "key_hidden": 8,
         "encoder_pool": 2, "freeze_encoder": True}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("keysdata"), "w", 3, seed=4)


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """Six people, two 16x16 photos each: one face plus a little noise."""
    folder = tmp_path_factory.mktemp("people")
    generator = torch.Generator().manual_seed(1)
    for person in range(6):
        face = torch.rand(1, 3, 16, 16, generator=generator) * 2 - 1
        photos = (face + 0.1 * torch.randn(2, 3, 16, 16, generator=generator)).clamp(-1, 1)
        save_images(photos, folder / f"p{person}", "photo")
    return folder


def job(weights, out, **kwargs) -> HyperTrainJob:
    return HyperTrainJob(weights=weights, out=out, **{"hyper": KEYED, "val_identities": 0, "key_steps": 5, **kwargs})


def test_learned_keys_are_trained_stored_and_each_identity_retrieves_its_own_weights(weights, people, tmp_path):
    result = train_hypernet(job(weights, tmp_path / "k", key_pairs=people), progress=False)
    net = load_hypernet(result.path).eval()
    assert net.config.key_dim == 4 and net.keys.shape == (3, 4)
    extra = json.loads(read_hypernet(result.path).header["extra"])
    assert extra["key_identities"] == 6 and extra["key_images"] == 12 and extra["key_steps"] == 5
    assert extra["key_pairs"] == people.name  # by name: a shared file carries no local path
    data = WeightDataset(weights)
    with torch.no_grad():
        chosen = net.nearest(torch.stack([data.image(i) for i in range(3)]))
    assert chosen.tolist() == [0, 1, 2]


def test_stored_features_give_the_same_keys_as_the_encoder(weights, people, tmp_path):
    from lowdim.hyper import HyperConfig, build_hypernet
    from lowdim_sd.face_inputs import load_face_image
    from lowdim_sd.precompute import discover_identities

    made = load_hypernet(train_hypernet(job(weights, tmp_path / "a", key_pairs=people), progress=False).path)
    data = WeightDataset(weights)
    torch.manual_seed(0)  # the seed fill_retrieval builds with: the same random encoder
    net = build_hypernet(HyperConfig.from_dict({**KEYED, "bank_size": 3}), data.space, data.layers)
    paths = [p for person in discover_identities(people) for p in person.images]
    images = [load_face_image(p, data.resolution, crop=False) for p in paths] + [data.image(i) for i in range(3)]
    keys, features = compute_features(net.encoder, images)
    file = save_features(tmp_path / "f.safetensors", net.encoder, keys, features)
    assert features.shape[1] == 5  # stored pooled, as the head reads them
    stored = load_hypernet(train_hypernet(job(weights, tmp_path / "b", key_pairs=people, features=file),
                                          progress=False).path)
    # fp16 storage of the features moves the keys a little, never which one is nearest
    torch.testing.assert_close(stored.keys, made.keys, atol=1e-2, rtol=1e-2)
    assert torch.equal((stored.keys @ stored.keys.T).argmax(1), (made.keys @ made.keys.T).argmax(1))


@pytest.mark.parametrize("change, said", [
    ({"hyper": {**KEYED, "key_dim": 0}}, 'add "key_dim": 64 to hyper'),
    ({"hyper": {**KEYED, "architecture": "transformer"}}, 'add "architecture": "retrieval" to hyper'),
    ({"key_pairs": None}, "pass key_pairs=FOLDER"),
    ({"key_steps": 0}, "HyperTrainJob(key_steps=...) must be >= 1"),
])
def test_key_options_that_cannot_work_are_one_line_before_anything_loads(weights, people, tmp_path, capsys,
                                                                            monkeypatch, change, said):
    import lowdim_sd.hypertrain as engine
    import lowdim_sd.loading as loading

    monkeypatch.setattr(engine, "WeightDataset", lambda *a, **k: pytest.fail("the weights were read"))
    monkeypatch.setattr(loading, "load_sd", lambda *a, **k: pytest.fail("the model was loaded"))
    options = {"key_pairs": people, **change}
    with pytest.raises(LowdimError, match=re.escape(said)) as refused:
        train_hypernet(job(weights, tmp_path / "x", **options), progress=False)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "x").exists()  # refused before the run's folder was made


def test_a_people_folder_with_single_photos_is_refused_by_name(weights, tmp_path, capsys):
    flat = tmp_path / "flat"
    save_images(torch.zeros(3, 3, 16, 16), flat, "one")
    code = main(["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "y"), "--encoder-config",
                 '{"model_type": "vit", "image_size": 16, "patch_size": 4, "hidden_size": 16, '
                 '"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}',
                 "--set", "architecture=retrieval", "--set", "key_dim=4", "--set", "encoder_pool=2",
                 "--key-pairs", str(flat), "--val-identities", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and str(flat) in err[0] and "two or more photos" in err[0]


def test_key_renders_key_each_weight_by_the_images_the_model_makes_with_it(weights, people, tmp_path, monkeypatch):
    import lowdim_sd.retrieval_fill as rf

    seen = {}
    real = rf.render_bank_features

    def spy(net, model, layer_set, adapter_seed, prompt, renders, seed=0, progress=True):
        made = real(net, model, layer_set, adapter_seed, prompt, renders, seed, progress)
        seen.update(prompt=prompt, shape=tuple(made.shape))
        return made

    monkeypatch.setattr(rf, "render_bank_features", spy)
    plain = load_hypernet(train_hypernet(job(weights, tmp_path / "p", key_pairs=people), progress=False).path)
    path = train_hypernet(job(weights, tmp_path / "r", key_pairs=people, key_renders=2), progress=False).path
    rendered = load_hypernet(path)
    assert seen["shape"][:2] == (3, 2) and "[V]" not in seen["prompt"]
    assert json.loads(read_hypernet(path).header["extra"])["key_renders"] == 2
    assert not torch.allclose(rendered.keys, plain.keys)
    torch.testing.assert_close(rendered.keys.norm(dim=-1), torch.ones(3))
    with pytest.raises(Exception, match=r"HyperTrainJob\(key_renders=\.\.\.\) must be between 0 and 16"):
        train_hypernet(job(weights, tmp_path / "z", key_pairs=people, key_renders=17), progress=False)


def test_key_renders_run_the_packaged_backbone_even_when_photo_features_are_stored(weights, tmp_path):
    # --features lets a packaged frozen backbone be built without its weights, but the images the model
    # makes with each θ (--key-renders) are new, so the backbone must have its real weights to see them.
    from lowdim.hyper import encoder
    from lowdim_sd.hypertrain_io import encoder_weights_context

    stored = tmp_path / "features.safetensors"
    with encoder_weights_context(job(weights, tmp_path / "a", features=stored)):
        assert encoder._SHAPES_ONLY
    with encoder_weights_context(job(weights, tmp_path / "b", features=stored, key_renders=2)):
        assert not encoder._SHAPES_ONLY


def test_a_retrieval_head_says_which_training_options_it_ignores_and_gives_no_false_resume_advice(
        weights, tmp_path, capsys):
    args = ["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "r"), "--encoder-config",
            json.dumps(TINY_VIT), "--set", "architecture=retrieval", "--val-identities", "0"]
    code = main([*args, "--steps", "40", "--lr", "1", "--checkpoint-every", "10", "--alpha", "0"])
    said = " ".join(capsys.readouterr().err.split())
    assert code == 0, said
    assert "runs no training steps: --steps, --lr, --checkpoint-every are ignored" in said
    assert not (tmp_path / "r" / "checkpoints").exists()
    code = main([*args, "--resume"])
    said = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "a retrieval head is made whole in one go" in said and "--checkpoint-every" not in said
    quiet = [str(tmp_path / "quiet") if value == str(tmp_path / "r") else value for value in args]
    code = main([*quiet, "--alpha", "0"])
    assert code == 0 and "ignored" not in capsys.readouterr().err  # the shipped recipe's --alpha 0: no warning


def test_the_cli_summary_says_the_bank_was_filled_after_the_key_steps_not_zero_steps(weights, people, tmp_path,
                                                                                     capsys):
    code = main(["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "k"), "--encoder-config",
                 '{"model_type": "vit", "image_size": 16, "patch_size": 4, "hidden_size": 16, '
                 '"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}',
                 "--set", "architecture=retrieval", "--set", "key_dim=4", "--set", "encoder_pool=2",
                 "--key-pairs", str(people), "--key-steps", "3", "--val-identities", "0"])
    said = capsys.readouterr().out
    assert code == 0, said
    assert "retrieval bank filled after 3 key-embedding steps in" in said
    assert "0 steps" not in said and "from step" not in said
