"""The SD training engine on a tiny pipeline: loss, images, resume, precision, batching, guards."""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import replace

import pytest
import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import FullTrainable, adapter_trainable, rank_relaxed_trainable, resolve_layers
from lowdim_sd.train import (
    Subject,
    TrainConfig,
    TrainingDiverged,
    train,
)
from lowdim_sd.train_loss import denoising_losses

FAST = TrainConfig(steps=6, learning_rate=5e-2, augment=False, prompt="a [V] face")


def held_out_loss(model, subjects, config, trainable_input_ids=None) -> torch.Tensor:
    """Mean loss over fixed draws (steps 10_000..10_007): the same noise before and after training."""
    ids = model.pipe.tokenizer("a sks face", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return torch.stack([denoising_losses(model, subjects, config, 10_000 + i, 0, ids) for i in range(8)]).mean(0)


def images_of(model, prompt="a photo of a sks face", seed=0):
    generator = torch.Generator().manual_seed(seed)
    return model.pipe(prompt, num_inference_steps=3, guidance_scale=3.0, generator=generator, height=16, width=16,
                      output_type="np").images


@pytest.mark.parametrize("space, lr", [("lidb", 2e-2), ("lora", 2e-2), ("vera", 2e-1)])
def test_training_lowers_the_loss_on_a_fixed_image(tiny_sd, faces, space, lr):
    model = load_sd(str(tiny_sd))
    subjects = [Subject(faces[:1], seed=1)]
    trainable = adapter_trainable(model, lowdim.get_space(space), resolve_layers(None))
    before = held_out_loss(model, subjects, FAST)
    train(model, subjects, trainable, TrainConfig(steps=40, learning_rate=lr, augment=False), progress=False)
    after = held_out_loss(model, subjects, FAST)
    assert after < 0.9 * before


def test_zero_init_adapter_leaves_images_bit_identical_and_training_changes_them(tiny_sd, faces):
    model = load_sd(str(tiny_sd))
    base = images_of(model)
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    assert (images_of(model) == base).all()
    train(model, [Subject(faces, 0)], trainable, FAST, progress=False)
    trained = images_of(model)
    assert abs(trained - base).max() > 1e-3
    lowdim.Adapters(model.modules).disable("subject")
    assert (images_of(model) == base).all()


def test_resume_equals_an_uninterrupted_run(tiny_sd, faces, tmp_path):
    def run(out, steps, resume=False):
        model = load_sd(str(tiny_sd))
        trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
        config = TrainConfig(steps=steps, learning_rate=2e-2, augment=True, checkpoint_every=2)
        result = train(model, [Subject(faces, 5)], trainable, config, out_dir=out, resume=resume, progress=False)
        return trainable.state(), result

    straight, _ = run(tmp_path / "a", 6)
    run(tmp_path / "b", 4)
    # A later try killed while saving step 6: its folder has tensors but no state.json, so it is not resumed from.
    killed = tmp_path / "b" / "checkpoints" / "step-000006"
    killed.mkdir()
    shutil.copy(tmp_path / "b" / "checkpoints" / "step-000004" / "trainable.safetensors", killed)
    resumed, result = run(tmp_path / "b", 6, resume=True)
    assert result.start_step == 4 and len(result.losses) == 2
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


@pytest.mark.parametrize("change, named", [
    ({"seed": 5}, "TrainConfig(seed=...) (0 there, 5 now)"),
    ({"learning_rate": 0.5}, "TrainConfig(learning_rate=...) (0.02 there, 0.5 now)"),
    ({"space": lowdim.get_space("lidb", rank=2)}, "the trainable's space config rank (1 there, 2 now)"),
    ({"space": lowdim.get_space("lora")}, "the trainable's space ('lidb' there, 'lora' now)"),
    ({"steps": 1}, "checkpoint is at step 2, past steps=1"),
])
def test_resume_refuses_a_checkpoint_of_another_run(tiny_sd, faces, tmp_path, change, named):
    def run(resume=False, seed=0, learning_rate=2e-2, space=None, steps=4):
        model = load_sd(str(tiny_sd))
        trainable = adapter_trainable(model, space or lowdim.get_space("lidb"), resolve_layers(None), seed=seed)
        config = TrainConfig(steps=steps, learning_rate=learning_rate, seed=seed, checkpoint_every=2)
        return train(model, [Subject(faces, seed)], trainable, config, out_dir=tmp_path, resume=resume,
                     progress=False)

    run(steps=2)
    with pytest.raises(lowdim.LowdimError, match=re.escape(named)) as error:
        run(resume=True, **change)
    assert "\n" not in str(error.value)
    assert run(resume=True).start_step == 2  # the same run still resumes


@pytest.fixture(scope="module")
def other_sd(tmp_path_factory):
    """Another base model of the same architecture (other random weights)."""
    from lowdim_sd.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("other") / "pipe", seed=1)


@pytest.mark.parametrize("change, named", [
    ("images", "the reference images differ (pixels, crop or size; digest "),
    ("crop", "the reference images differ"),
    ("model", "the base model differs (weights digest "),
])
def test_resume_refuses_other_reference_images_or_another_base_model(tiny_sd, other_sd, faces, tmp_path, change,
                                                                    named):
    def run(images=faces, model_path=tiny_sd, resume=False, steps=2):
        model = load_sd(str(model_path))
        trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
        config = TrainConfig(steps=steps, learning_rate=2e-2, checkpoint_every=2)
        return train(model, [Subject(images, 0)], trainable, config, out_dir=tmp_path, resume=resume,
                     progress=False)

    run()
    other = {"images": {"images": faces.flip(-1)},
             "crop": {"images": torch.nn.functional.interpolate(faces[..., 2:-2, 2:-2], size=(16, 16))},
             "model": {"model_path": other_sd}}[change]
    with pytest.raises(lowdim.LowdimError, match=re.escape(named)) as error:
        run(resume=True, steps=4, **other)
    assert "\n" not in str(error.value)
    assert run(resume=True, steps=4).start_step == 2  # the same images and model still resume


def test_fp16_loss_scaling_skips_overflowing_steps_and_trains_on_the_rest(tiny_sd, faces, monkeypatch):
    import lowdim_sd.train as engine

    # What a GPU gets with --mixed-precision fp16; CPU autocast runs the same scaler logic.
    scalers = []
    monkeypatch.setattr(engine.runs, "grad_scaler", lambda device, mixed: scalers.append(
        torch.amp.GradScaler("cpu", init_scale=2.0**40, growth_interval=1)) or scalers[-1])
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lora"), resolve_layers(None))
    trainable.parameters[0].data.normal_(0.0, 0.01)  # every factor live, so every gradient is non-zero
    start = [p.detach().clone() for p in trainable.parameters]
    config = TrainConfig(steps=1, learning_rate=1e-2, mixed_precision="fp16", augment=False)
    train(model, [Subject(faces, 0)], trainable, config, progress=False)  # 2^40 overflows fp16: no raise
    assert all(torch.equal(p, s) for p, s in zip(trainable.parameters, start, strict=True))  # skipped
    assert scalers[-1].get_scale() < 2.0**40
    config = TrainConfig(steps=40, learning_rate=1e-2, mixed_precision="fp16", augment=False)
    result = train(model, [Subject(faces, 0)], trainable, config, progress=False)
    assert all(math.isfinite(loss) for loss in result.losses)
    assert any(not torch.equal(p, s) for p, s in zip(trainable.parameters, start, strict=True))  # then it trains


def test_precision_combinations_that_cannot_train_are_refused(tiny_sd, faces):
    half = load_sd(str(tiny_sd), dtype="fp16")
    with pytest.raises(lowdim.LowdimError, match="full DreamBooth updates the model's own weights.*fp16"):
        train(half, [Subject(faces, 0)], FullTrainable(half), TrainConfig(steps=1), progress=False)
    bf16 = load_sd(str(tiny_sd), dtype="bf16")
    trainable = adapter_trainable(bf16, lowdim.get_space("lidb"), resolve_layers(None))
    with pytest.raises(lowdim.LowdimError, match="--mixed-precision fp16 with a bf16 model"):
        train(bf16, [Subject(faces, 0)], trainable, TrainConfig(steps=1, mixed_precision="fp16"), progress=False)


@pytest.mark.parametrize("dtype, mixed", [("fp32", "bf16"), ("bf16", "no"), ("fp16", "no"), ("fp32", "fp16")])
def test_half_precision_paths_run(tiny_sd, faces, dtype, mixed):
    model = load_sd(str(tiny_sd), dtype=dtype)
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    config = TrainConfig(steps=2, learning_rate=1e-2, augment=False, mixed_precision=mixed)
    result = train(model, [Subject(faces, 0)], trainable, config, progress=False)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert all(p.dtype == torch.float32 for p in trainable.parameters)  # adapters train in fp32


def test_v_prediction_models_train(tiny_sd_v, faces):
    model = load_sd(str(tiny_sd_v))
    assert model.pipe.scheduler.config.prediction_type == "v_prediction"
    trainable = adapter_trainable(model, lowdim.get_space("lora", rank=2), resolve_layers("unet"))
    result = train(model, [Subject(faces, 0)], trainable, FAST, progress=False)
    assert len(result.losses) == FAST.steps


def test_full_dreambooth_changes_unet_weights_only(tiny_sd, faces, tmp_path):
    model = load_sd(str(tiny_sd))
    before = {k: v.clone() for k, v in model.pipe.unet.state_dict().items()}
    text_before = {k: v.clone() for k, v in model.pipe.text_encoder.state_dict().items()}
    result = train(model, [Subject(faces, 0)], FullTrainable(model), TrainConfig(steps=2, learning_rate=1e-3),
                   out_dir=tmp_path, progress=False)
    assert any(not torch.equal(before[k], v) for k, v in model.pipe.unet.state_dict().items())
    assert all(torch.equal(text_before[k], v) for k, v in model.pipe.text_encoder.state_dict().items())
    assert (result.outputs[0] / "model_index.json").is_file()


def test_rank_relaxed_finetuning_starts_from_the_initial_adapter(tiny_sd, faces, tmp_path):
    model = load_sd(str(tiny_sd))
    first = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    train(model, [Subject(faces, 0)], first, FAST, out_dir=tmp_path / "lidb", progress=False)
    predicted = images_of(model)
    fresh = load_sd(str(tiny_sd))
    relaxed = rank_relaxed_trainable(fresh, tmp_path / "lidb" / "adapter.safetensors", rank=3)
    assert abs(images_of(fresh) - predicted).max() < 1e-4  # relaxing the rank changes nothing by itself
    result = train(fresh, [Subject(faces, 0)], relaxed, FAST, out_dir=tmp_path / "fast", progress=False)
    exported = lowdim.read_adapter(result.outputs[0]).lora_factors()
    assert {down.shape[0] for down, _ in exported.values()} == {1 + 3}


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_sd, faces, tmp_path, monkeypatch):
    from lowdim_sd import train as engine

    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    real = engine.denoising_losses
    monkeypatch.setattr(engine, "denoising_losses", lambda m, s, c, step, *a, **k:
                        real(m, s, c, step, *a, **k) * (float("nan") if step == 3 else 1.0))
    with pytest.raises(TrainingDiverged, match="step 4.*last good state is saved"):
        train(model, [Subject(faces, 0)], trainable, FAST, out_dir=tmp_path, progress=False)
    assert (tmp_path / "checkpoints" / "step-000003" / "state.json").is_file()
    assert all(torch.isfinite(p).all() for p in trainable.parameters)


def test_ctrl_c_saves_a_checkpoint_and_resumes_from_it(tiny_sd, faces, tmp_path, monkeypatch):
    from lowdim_sd import train as engine

    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    real = engine.denoising_losses

    def interrupt(m, s, c, step, *a, **k):
        if step == 2:
            raise KeyboardInterrupt
        return real(m, s, c, step, *a, **k)

    monkeypatch.setattr(engine, "denoising_losses", interrupt)
    with pytest.raises(KeyboardInterrupt, match="interrupted at step 2; checkpoint saved to .*step-000002; "
                                                "continue with the same call with resume=True"):
        train(model, [Subject(faces, 0)], trainable, FAST, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(engine, "denoising_losses", real)
    result = train(model, [Subject(faces, 0)], trainable, FAST, out_dir=tmp_path, resume=True, progress=False)
    assert result.start_step == 2


def test_a_stop_inside_the_optimizer_update_keeps_only_the_older_checkpoints(tiny_sd, faces, tmp_path,
                                                                            monkeypatch):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    real, calls = torch.optim.AdamW.step, []

    def exhaust(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # the update of step 4, after the checkpoint of step 2
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", exhaust)
    config = TrainConfig(steps=6, learning_rate=5e-2, augment=False, checkpoint_every=2)
    with pytest.warns(UserWarning, match="inside the optimizer update of step 4"), \
            pytest.raises(torch.OutOfMemoryError):
        train(model, [Subject(faces, 0)], trainable, config, out_dir=tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000002"]


@pytest.mark.parametrize("every, said", [
    (0, "no checkpoint of it was saved and there is no earlier one; run the same call again to start over"),
    (2, "the same call with resume=True continues from the last periodic one, "),
])
def test_ctrl_c_inside_the_optimizer_update_names_what_is_left_or_says_rerun(tiny_sd, faces, tmp_path, monkeypatch,
                                                                            every, said):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    real, calls = torch.optim.AdamW.step, []

    def stop(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", stop)
    config = TrainConfig(steps=6, learning_rate=5e-2, augment=False, checkpoint_every=every)
    with pytest.raises(KeyboardInterrupt, match=re.escape(said)):
        train(model, [Subject(faces, 0)], trainable, config, out_dir=tmp_path, progress=False)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert kept == (["step-000002"] if every else [])


def test_a_prompt_without_the_identifier_warns(tiny_sd, faces):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    with pytest.warns(UserWarning, match="has no \\[V\\]"):
        train(model, [Subject(faces, 0)], trainable, TrainConfig(steps=1, prompt="a face"), progress=False)


def test_gradient_checkpointing_gives_the_same_step(tiny_sd, faces):
    states = []
    for checkpointing in (False, True):
        model = load_sd(str(tiny_sd))
        trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
        config = TrainConfig(steps=2, learning_rate=1e-2, augment=False, gradient_checkpointing=checkpointing)
        train(model, [Subject(faces, 0)], trainable, config, progress=False)
        states.append(trainable.state())
    assert all(torch.allclose(states[0][k], states[1][k], atol=1e-5) for k in states[0])


def test_the_v_prediction_target_is_the_velocity(tiny_sd_v, faces, monkeypatch):
    model = load_sd(str(tiny_sd_v))
    scheduler = model.noise_scheduler
    captured = {}
    add_noise = scheduler.add_noise

    def record(latents, noise, timesteps):
        captured["velocity"] = scheduler.get_velocity(latents, noise, timesteps)
        return add_noise(latents, noise, timesteps)

    class Output:
        def __init__(self, sample):
            self.sample = sample

    monkeypatch.setattr(scheduler, "add_noise", record)
    monkeypatch.setattr(model.pipe.unet, "forward", lambda *args, **kwargs: Output(captured["velocity"]))
    ids = model.pipe.tokenizer("a sks face", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():  # a UNet that predicts the true velocity has zero loss
        assert denoising_losses(model, [Subject(faces, 0)], TrainConfig(augment=False), 0, 0, ids).max() < 1e-8


@pytest.mark.parametrize("clipped", [False, True])
def test_sgd_takes_plain_steps_along_the_gradient_clipped_to_max_grad_norm(tiny_sd, faces, clipped):
    """SGD's first step is lr times the gradient, so the step is known exactly from the gradient measured here:
    unclipped, or, with max_grad_norm a quarter of its norm, scaled as torch's clip_grad_norm_ scales it (one
    subject is clipped as several are: a slow property in test_batched_subjects_property.py is the only other
    check, and takes minutes to shrink)."""
    model = load_sd(str(tiny_sd))
    subjects = [Subject(faces[:1], seed=1)]
    trainable = adapter_trainable(model, lowdim.get_space("lora"), resolve_layers(None))
    with torch.no_grad():
        for param in trainable.parameters:  # LoRA's up starts at 0: give every factor a gradient
            param.normal_(0, 0.1)
    before = [p.detach().clone() for p in trainable.parameters]
    probe = TrainConfig(steps=1, learning_rate=0.5, augment=False, optimizer="sgd", max_grad_norm=None)
    ids = model.pipe.tokenizer("a sks face", padding="max_length", max_length=77, return_tensors="pt").input_ids
    loss = denoising_losses(model, subjects, probe, 0, 0, ids).mean()
    grads = torch.autograd.grad(loss, trainable.parameters)
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    limit = norm / 4 if clipped else None  # well under the norm: an unclipped step is four times the clipped one
    factor = limit / (norm + 1e-6) if limit is not None else 1.0  # clip_grad_norm_ divides by the norm plus 1e-6
    train(model, subjects, trainable, replace(probe, max_grad_norm=limit), progress=False)
    for start, grad, param in zip(before, grads, trainable.parameters, strict=True):
        torch.testing.assert_close(param.detach(), start - 0.5 * factor * grad, atol=1e-6, rtol=1e-4)
    with pytest.raises(lowdim.LowdimError, match=r"TrainConfig\(optimizer=...\) must be one of adamw, sgd"):
        TrainConfig(optimizer="adam").validate()


def test_a_space_trains_at_its_own_declared_rate_unless_given_one(tmp_path):
    from lowdim_sd.workflows import TrainJob, check_train_job, train_config

    class Declares(lowdim.spaces.lora.LoraSpace):
        name = "declares"
        learning_rate = 3e-2

    plugin = type(lowdim)("declares_plugin")
    plugin.register_spaces = lowdim.hookspecs.hookimpl(lambda register: register(Declares))
    with lowdim.use_registry(lowdim.Registry.from_plugins(["lowdim.spaces.builtin", plugin])):
        rates = []
        for space, given in (("declares", None), ("declares", 5e-4), ("lidb", None), ("lora", None)):
            job = TrainJob(model="tinyfaces", space=space, learning_rate=given, out=tmp_path)
            check_train_job(job)
            rates.append(train_config(job).learning_rate)  # check_train_job changes nothing on the job
    assert rates == [3e-2, 5e-4, 2e-3, 1e-4]  # the backend's own rates for its spaces stay first


def test_resume_into_a_folder_with_no_checkpoint_says_it_starts_over(tiny_sd, faces, tmp_path):
    """A mistyped --out with --resume would throw the earlier run away without a word."""
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    config = TrainConfig(steps=2, learning_rate=1e-2, augment=False, checkpoint_every=0)
    with pytest.warns(UserWarning, match=r"resume=True: .*typo holds no checkpoint, so the run starts from step 0"):
        result = train(model, [Subject(faces, 0)], trainable, config, out_dir=tmp_path / "typo", resume=True,
                       progress=False)
    assert result.start_step == 0 and len(result.losses) == 2
