"""``lowdim train-hypernet`` (phase 1): losses of eq. 2, held-out validation, and phase 2 reading it.

A run's life (resume, stops, refusals before anything is written) is in test_hypertrain_runs.py; the weight folders
it reads as one data set, in test_hypertrain_data_sets.py."""

from __future__ import annotations

import json
import re

import pytest
import torch
from hypertrain_jobs import HYPER, TINY_VIT, job, records  # tests/sd, on the path as pytest puts it
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it
from safetensors.torch import load_file

import lowdim
import lowdim.hyper.storage as storage
import lowdim_sd.hypertrain_losses as hl
from lowdim.hyper import load_hypernet, weight_loss
from lowdim_cli.main import main
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.personalize import PersonalizeJob, personalize
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")


def test_trains_validates_on_held_out_identities_only_and_personalize_reads_it(weights, tiny_sd, tmp_path,
                                                                              monkeypatch):
    import lowdim_sd.hypertrain as engine

    seen = []
    real = hl.pair_losses

    def spy(net, diffusion, batch, step, job, *, train, cache=None):
        seen.append((train, batch[2].tolist()))
        return real(net, diffusion, batch, step, job, train=train, cache=cache)

    monkeypatch.setattr(hl, "pair_losses", spy)  # validation calls it here
    monkeypatch.setattr(engine, "pair_losses", spy)  # the training step, through its own import
    result = train_hypernet(job(weights, tmp_path / "h"), progress=False)
    assert [training for training, _ in seen].count(True) == 3  # one training batch a step
    assert len(result.losses) == 3 and result.path.is_file()
    assert len(result.val_names) == 1 and not set(result.val_names) & set(result.train_names)
    assert sorted(result.train_names + result.val_names) == ["person_000", "person_001", "person_002", "person_003"]
    held_out = int(result.val_names[0].split("_")[1])
    assert all(held_out not in numbers for training, numbers in seen if training)
    assert {n for training, numbers in seen if not training for n in numbers} == {held_out}
    val = records(result.metrics, "val")
    assert [r["step"] for r in val] == [0, 2, 3]
    assert all(r["identities"] == result.val_names and r["diffusion_loss"] > 0 and r["weight_loss"] > 0
               and len(r["weight_loss_per_iterate"]) == 2 for r in val)
    train = records(result.metrics, "train")
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(r["loss"] == pytest.approx(r["diffusion_loss"] + r["weight_loss"], rel=1e-5) for r in train)

    net = load_hypernet(result.path)
    assert net.metadata["model"] == str(tiny_sd) and net.metadata["layer_set"] == "unet+text"
    assert net.metadata["alpha"] == 1.0 and net.metadata["beta"] == 1.0 and net.metadata["adapter_seed"] == 0
    # The phrase the targets answer to, and the weight folders by name: no path of this machine.
    assert (net.metadata["prompt"], net.metadata["token"]) == ("a [V] face", "sks")
    assert net.metadata["weights"] == weights.name and str(weights.parent) not in json.dumps(net.metadata)
    assert net.metadata["bases_checksum"] == storage.bases_checksum(net.space, net.layers, 0)
    face = save_images(torch.rand(1, 3, 16, 16) * 2 - 1, tmp_path, "face")[0]
    made = personalize(PersonalizeJob(model=str(tiny_sd), image=face, hypernet=result.path, only_hyper=True,
                                      preview=False, crop=False, out=tmp_path / "me"), progress=False)
    assert lowdim.read_adapter(made.adapter).space.name == "lidb"
    # --seed still seeds the LoRA, the noise and the preview; the prediction's bases come from the weights' seed.
    relaxed = personalize(PersonalizeJob(model=str(tiny_sd), image=face, hypernet=result.path, steps=1, seed=5,
                                         preview=False, crop=False, out=tmp_path / "me5"), progress=False)
    stacked = lowdim.read_adapter(relaxed.adapter)
    assert stacked.seed == 5 and stacked.space.config.components[0]["seed"] == 0


def test_beta_only_never_runs_the_diffusion_model_and_the_weight_loss_falls(weights, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("no diffusion forward with alpha=0")

    monkeypatch.setattr(hl, "denoising_losses", forbidden)
    monkeypatch.setattr("lowdim_sd.loading.load_sd", forbidden)
    result = train_hypernet(job(weights, tmp_path / "h", alpha=0.0, steps=15, batch_size=3, learning_rate=1e-3,
                                val_every=5, checkpoint_every=0), progress=False)
    train = records(result.metrics, "train")
    assert all(r["diffusion_loss"] is None and r["loss"] == pytest.approx(r["weight_loss"]) for r in train)
    assert train[-1]["weight_loss"] < 0.95 * train[0]["weight_loss"]  # the same 3 training pairs each step
    val = records(result.metrics, "val")
    assert [r["step"] for r in val] == [0, 5, 10, 15] and all(r["diffusion_loss"] is None for r in val)


def test_each_step_hands_the_optimizer_its_own_batchs_gradient_not_a_running_sum(weights, tmp_path, monkeypatch):
    grads = []  # what AdamW is given each step; unclipped, so a sum carried over from earlier steps would show
    real = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: grads.append(torch.cat(
        [p.grad.flatten() for group in self.param_groups for p in group["params"] if p.grad is not None]))
        or real(self, *a, **k))
    # The same 3 training pairs every step, at a rate too small to move anything: the same gradient each time.
    train_hypernet(job(weights, tmp_path / "h", alpha=0.0, steps=3, batch_size=3, learning_rate=1e-12, val_every=0,
                       checkpoint_every=0, max_grad_norm=None), progress=False)
    assert len(grads) == 3 and float(grads[0].norm()) > 0
    for later in grads[1:]:
        torch.testing.assert_close(later, grads[0], rtol=1e-4, atol=1e-6)


def test_alpha_only_is_the_diffusion_loss_of_every_iterate(weights, tmp_path, monkeypatch):
    sizes = []
    real = hl.denoising_losses
    monkeypatch.setattr(hl, "denoising_losses", lambda model, subjects, *a: sizes.append(len(subjects)) or real(
        model, subjects, *a))
    result = train_hypernet(job(weights, tmp_path / "h", beta=0.0, steps=2, val_every=0), progress=False)
    assert all(r["loss"] == pytest.approx(r["diffusion_loss"]) for r in records(result.metrics, "train"))
    assert sizes == [2 * 2, 2 * 2]  # batch of 2 pairs, both iterates, one UNet batch per step
    train_hypernet(job(weights, tmp_path / "l", beta=0.0, steps=1, val_every=0, diffusion_iterates="last"),
                   progress=False)
    assert sizes[-1] == 2
    with pytest.raises(lowdim.LowdimError, match="not both 0"):
        train_hypernet(job(weights, tmp_path / "z", alpha=0.0, beta=0.0), progress=False)
    with pytest.raises(lowdim.LowdimError, match="dtype='fp16' on a CPU"):  # the diffusion term trains through it
        train_hypernet(job(weights, tmp_path / "h16", dtype="fp16", cpu=True), progress=False)
    assert not (tmp_path / "h16").exists()
    train_hypernet(job(weights, tmp_path / "b16", alpha=0.0, steps=1, val_every=0, dtype="fp16", cpu=True),
                   progress=False)  # without it no model loads: any dtype


def test_cli_names_only_the_files_it_wrote(weights, tmp_path, capsys):
    code = main(["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "h"), "--encoder-config",
                 json.dumps(TINY_VIT), "--width", "16", "--heads", "2", "--iterations", "1", "--steps", "1",
                 "--batch-size", "2", "--val-identities", "0", "--alpha", "0", "--log-every", "0"])
    text = " ".join(capsys.readouterr().out.split())
    assert code == 0, text
    assert not (tmp_path / "h" / "metrics.jsonl").exists() and "metrics.jsonl" not in text
    assert "hypernet.safetensors" in text and (tmp_path / "h" / "hypernet.safetensors").is_file()


def test_cli_train_hypernet(weights, tmp_path, capsys):
    code = main(["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "h"), "--encoder-config",
                 json.dumps(TINY_VIT), "--width", "16", "--heads", "2", "--iterations", "1", "--steps", "2",
                 "--batch-size", "2", "--val-fraction", "0.25", "--val-every", "1", "--checkpoint-every", "0",
                 "--alpha", "0.5", "--beta", "2", "--freeze-encoder"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "3 training and 1 held-out identities" in text
    # Each validation is printed as it happens (steps 0, 1 and 2), as metrics.jsonl has it.
    logged = records(tmp_path / "h" / "metrics.jsonl", "val")
    shown = re.findall(r"step (\d+), 1 held-out identity: weight loss (\S+) \((\S+)× the training mean's\), "
                       r"diffusion loss (\S+)", " ".join(text.split()))
    assert [int(step) for step, *_ in shown] == [r["step"] for r in logged] == [0, 1, 2]
    for (_, weight, against, denoise), record in zip(shown, logged, strict=True):
        assert float(weight) == pytest.approx(record["weight_loss"], rel=1e-3)
        assert float(against) == pytest.approx(record["weight_loss_vs_mean"], rel=1e-2)
        assert float(denoise) == pytest.approx(record["diffusion_loss"], rel=1e-3)
    net = load_hypernet(tmp_path / "h" / "hypernet.safetensors")
    assert net.config.iterations == 1 and net.metadata["alpha"] == 0.5 and net.metadata["beta"] == 2.0
    assert net.config.freeze_encoder and net.config.encoder_config["hidden_size"] == 16
    code = main(["train-hypernet", "-w", str(tmp_path / "nothing"), "-o", str(tmp_path / "x")])
    assert code == 1 and "nothing: no such folder" in capsys.readouterr().err


def test_encoder_config_option():
    from lowdim_cli.hyper_commands import encoder_config_option

    assert encoder_config_option("tiny")["model_type"] == "vit" and encoder_config_option(None) is None
    assert encoder_config_option('{"model_type": "dinov2"}') == {"model_type": "dinov2"}
    with pytest.raises(lowdim.LowdimError, match="--encoder-config must be"):
        encoder_config_option("{not json")


def test_a_frozen_encoder_runs_once_per_image_and_trains_exactly_as_without_the_cache(weights, tmp_path,
                                                                                   monkeypatch):
    from lowdim.hyper.encoder import ImageEncoder

    frozen = {**HYPER, "freeze_encoder": True}
    encoded = []  # images each run's backbone was given
    real = ImageEncoder.features
    monkeypatch.setattr(ImageEncoder, "features",
                        lambda self, pixels: encoded.append(len(pixels)) or real(self, pixels))
    cached = train_hypernet(job(weights, tmp_path / "c", hyper=frozen, steps=6, val_every=3), progress=False)
    assert sum(encoded) == 4  # four identities: each image's features computed once, then reused
    encoded.clear()
    monkeypatch.setattr(hl.FeatureCache, "get", lambda self, encoder, images, items: None)
    direct = train_hypernet(job(weights, tmp_path / "d", hyper=frozen, steps=6, val_every=3), progress=False)
    assert sum(encoded) > 4  # without the cache every step encodes its batch again
    assert cached.losses == pytest.approx(direct.losses, rel=1e-5)
    expected, got = load_file(str(direct.path)), load_file(str(cached.path))
    assert all(torch.allclose(expected[key], got[key], atol=1e-6) for key in expected)


def test_validation_reports_the_last_iterates_weight_loss_against_zero_and_mean_predictions(weights, tmp_path):
    result = train_hypernet(job(weights, tmp_path / "h", hyper={**HYPER, "head_init_scale": 1.0}, alpha=0.0,
                                steps=2, val_every=2), progress=False)  # iterates far apart
    data = WeightDataset(weights)
    val = records(result.metrics, "val")[-1]
    number = data.names.index(val["identities"][0])
    target = {layer: {k: v[None] for k, v in p.items()} for layer, p in data.weights(number).items()}
    with torch.no_grad():  # the saved network is the one validated at the last step
        first, last = (weight_loss(theta, target) for theta in load_hypernet(result.path).eval()(
            data[number][0][None], return_all=True))
    assert float(first) != pytest.approx(float(last), rel=1e-2)
    assert val["weight_loss"] == pytest.approx(float(last), rel=1e-4)
    zero = sum(float(v.pow(2).sum()) for p in target.values() for v in p.values())
    assert val["weight_loss_vs_zero"] == pytest.approx(val["weight_loss"] / zero, rel=1e-4)
    train = [data.weights(data.names.index(n)) for n in result.train_names]
    mean = sum(float((t[layer][k] - sum(x[layer][k] for x in train) / len(train)).pow(2).sum())
               for t in [target] for layer in t for k in t[layer])
    assert val["weight_loss_vs_mean"] == pytest.approx(val["weight_loss"] / mean, rel=1e-4)


def test_standardize_fits_the_training_targets_and_starts_at_their_mean(weights, tmp_path):
    result = train_hypernet(job(weights, tmp_path / "h", hyper={**HYPER, "standardize": True}, alpha=0.0,
                                steps=1, learning_rate=1e-9, val_every=1), progress=False)
    val = records(result.metrics, "val")
    assert val[0]["weight_loss_vs_mean"] == pytest.approx(1.0, abs=1e-3)  # z = 0 at step 0: the mean, exactly
    net = load_hypernet(result.path)
    data = WeightDataset(weights)
    layer = data.layers[0].name
    train = torch.stack([data.weights(data.names.index(n))[layer]["A_train"] for n in result.train_names])
    mean, std = net.target_mean0, net.target_std0
    assert net.head_groups.members[0][0] == 0  # layer 0 is row 0 of group 0; A_train comes first in its row
    torch.testing.assert_close(mean[0, : train[0].numel()], train.flatten(1).mean(0), atol=1e-6, rtol=1e-5)
    assert (std > 0).all()


def test_the_teacher_target_is_the_model_with_the_precomputed_weights(weights, tmp_path, monkeypatch):
    targets = []
    real = hl.denoising_losses

    def spy(model, subjects, config, step, micro, input_ids, teacher=None):
        if teacher is not None:
            original = teacher

            def recording(noisy, timesteps):
                out = original(noisy, timesteps)
                targets.append(([s.seed for s in subjects], noisy, timesteps, out))
                return out
            teacher = recording
        return real(model, subjects, config, step, micro, input_ids, teacher)

    monkeypatch.setattr(hl, "denoising_losses", spy)
    result = train_hypernet(job(weights, tmp_path / "h", beta=0.0, steps=1, val_every=0, batch_size=2,
                                diffusion_iterates="last", diffusion_target="teacher"), progress=False)
    assert len(targets) == 1 and result.losses[0] > 0
    numbers, noisy, timesteps, out = targets[0]  # a subject's noise seed is its identity's number (--seed 0)
    assert len(set(numbers)) == 2
    # Recompute: the same model, with one plain adapter holding the identity's precomputed θ.
    from lowdim_sd.loading import load_sd
    from lowdim_sd.modes import resolve_layers

    data = WeightDataset(weights)
    model = load_sd(data.index["model"], "cpu", "fp32")
    adapters = lowdim.Adapters(model.modules)
    adapters.add("t", data.space, resolve_layers(data.index["layer_set"]), seed=int(data.index["seed"]))
    candidates = []
    for number in range(len(data.names)):
        adapters.load_tensors("t", data.weights(number))
        with torch.no_grad():
            ids = model.pipe.tokenizer("a sks face", padding="max_length", truncation=True,
                                       max_length=model.pipe.tokenizer.model_max_length, return_tensors="pt").input_ids
            hidden = model.pipe.text_encoder(ids)[0].expand(len(noisy), -1, -1)
            candidates.append(model.pipe.unet(noisy, timesteps, hidden).sample)
    for row, number in enumerate(numbers):  # each sample's target is made with its own identity's θ
        torch.testing.assert_close(out[row], candidates[number][row], atol=1e-5, rtol=1e-5)
    with pytest.raises(lowdim.LowdimError, match=r"HyperTrainJob\(diffusion_target=\.\.\.\)"):
        train_hypernet(job(weights, tmp_path / "x", diffusion_target="clean"), progress=False)


def test_extra_images_without_weights_add_their_diffusion_loss_only(weights, tmp_path, monkeypatch):
    extra = tmp_path / "extra"
    save_images(torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1, extra, "fresh")
    sizes = []
    real = hl.denoising_losses
    monkeypatch.setattr(hl, "denoising_losses", lambda model, subjects, *a: sizes.append(
        sorted({s.seed for s in subjects})) or real(model, subjects, *a))
    result = train_hypernet(job(weights, tmp_path / "h", steps=2, val_every=0, diffusion_iterates="last",
                                extra_images=[extra], extra_batch_size=2), progress=False)
    assert len(result.losses) == 2
    # per step: the pairs' D, then the extra images' D with seeds past every weight identity's
    pairs, extras = sizes[0::2], sizes[1::2]
    assert len(extras) == 2 and all(len(seeds) == 2 for seeds in extras)
    assert all(seed >= 10**7 for seeds in extras for seed in seeds) and all(s < 10**7 for x in pairs for s in x)
    with pytest.raises(lowdim.LowdimError, match=r"\(extra_images=\.\.\.\).*HyperTrainJob\(alpha=\.\.\.\) > 0"):
        train_hypernet(job(weights, tmp_path / "z", alpha=0.0, extra_images=[extra]), progress=False)


def test_a_retrieval_head_stores_the_training_identities_and_personalize_predicts_a_look_alikes_weights(
        weights, tiny_sd, tmp_path):
    with pytest.warns(UserWarning, match=r"runs no training steps: HyperTrainJob\(steps=\.\.\.\), "
                                         r"HyperTrainJob\(checkpoint_every=\.\.\.\) are ignored"):
        result = train_hypernet(job(weights, tmp_path / "r", hyper={"encoder_config": TINY_VIT,
                                                                     "architecture": "retrieval"}), progress=False)
    net = load_hypernet(result.path)
    assert net.config.bank_size == 3 and result.losses == [] and len(result.val_names) == 1
    data = WeightDataset(weights)
    val = records(result.metrics, "val")[0]
    assert val["weight_loss"] > 0 and val["weight_loss_vs_mean"] > 0
    train = data.subset(result.train_names)
    with torch.no_grad():  # a training identity's own image retrieves its own θ
        predicted = net.eval()(train.image(1)[None])
    expected = train.weights(1)
    assert all(torch.equal(predicted[layer][k][0], expected[layer][k]) for layer in expected for k in expected[layer])
    face = save_images(train.image(1)[None], tmp_path, "face")[0]
    made = personalize(PersonalizeJob(model=str(tiny_sd), image=face, hypernet=result.path, only_hyper=True,
                                      preview=False, crop=False, out=tmp_path / "me"), progress=False)
    stored = lowdim.read_adapter(made.adapter)
    layer = next(iter(expected))
    torch.testing.assert_close(stored.params[layer]["A_train"].float(), expected[layer]["A_train"], atol=1e-3,
                               rtol=1e-3)
