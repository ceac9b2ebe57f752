"""``personalize --keep-styles``: the style-delta loss, its prompts, and the run that uses it."""

from __future__ import annotations

import json

import pytest
import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import ADAPTER, adapter_trainable, resolve_layers
from lowdim_sd.personalize import PersonalizeJob, personalize
from lowdim_sd.style_delta import StyleTerm, style_prompts, without_identifier
from lowdim_sd.train import Subject, TrainConfig, train
from lowdim_sd.train_loss import denoising_losses

STYLES = ["a [V] face at night", "a pencil sketch of a [V] face"]


def test_the_class_prompt_drops_the_identifier_and_its_space():
    assert without_identifier("a [V] face at night") == "a face at night"
    assert without_identifier("[V] in a hat") == "in a hat"


def test_style_prompts_leave_out_the_training_prompt_and_need_one_other(tiny_sd):
    tokenizer = load_sd(str(tiny_sd)).pipe.tokenizer
    prompts = style_prompts(tokenizer, ["a [V] face", *STYLES, "no identifier"], "a [V] face", "sks")
    assert prompts.styled.shape[0] == prompts.styled_class.shape[0] == 2
    with pytest.raises(lowdim.LowdimError, match="--keep-styles needs style prompts"):
        style_prompts(tokenizer, ["a [V] face"], "a [V] face", "sks")


@pytest.fixture
def adapted(tiny_sd):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lora"), resolve_layers(None))
    with torch.no_grad():  # LoRA's up factor starts at zero: make the adapter change the model
        for param in trainable.parameters:
            param.normal_(0, 0.2)
    return model, trainable


def noisy_batch(model, size: int = 3, seed: int = 0):
    """Noisy latents, timesteps and the training prompt's states: what the finetune's batch hands the term."""
    generator = torch.Generator().manual_seed(seed)
    unet = model.pipe.unet
    side = unet.config.sample_size
    noisy = torch.randn((size, unet.config.in_channels, side, side), generator=generator)
    timesteps = torch.randint(0, 1000, (size,), generator=generator)
    ids = model.pipe.tokenizer(["a sks face"], padding="max_length", return_tensors="pt",
                               max_length=model.pipe.tokenizer.model_max_length).input_ids
    return noisy, timesteps, model.pipe.text_encoder(ids)[0].expand(size, -1, -1)


def style_term(model, trainable, styles, reference, weight=1.0) -> StyleTerm:
    return StyleTerm(style_prompts(model.pipe.tokenizer, styles, "a [V] face", "sks"), trainable.adapters, ADAPTER,
                     weight, reference)


def styled_loss(model, term: StyleTerm, batch=None):
    noisy, timesteps, hidden = batch or noisy_batch(model)
    *extended, rows = term.extend(model, noisy, timesteps, hidden, torch.Generator().manual_seed(1))
    return term.loss(model, model.pipe.unet(*extended).sample, rows), rows


def test_a_style_that_adds_nothing_costs_nothing_and_a_real_style_pulls_the_adapter(adapted, faces):
    model, trainable = adapted
    # The same words with a second space: the base model's difference is zero and the target is the
    # adapted prediction itself.
    assert float(styled_loss(model, style_term(model, trainable, ["a [V]  face"], faces[:1]))[0].detach()) < 1e-10
    real = styled_loss(model, style_term(model, trainable, STYLES, faces[:1]))[0]
    assert float(real.detach()) > 1e-6
    grads = torch.autograd.grad(real, trainable.parameters, allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    assert all(slot.enabled for slot in trainable.adapters.slots(ADAPTER).values())  # switched back on


def test_the_rows_in_the_shared_call_give_what_separate_calls_give(adapted, faces):
    # Riding in the batch's call is only a saving: the loss must be the module's formula, a call per term.
    model, trainable = adapted
    pipe, batch = model.pipe, noisy_batch(model)
    joint, rows = styled_loss(model, style_term(model, trainable, STYLES, faces[:1], weight=0.5), batch)
    prompts, plain = style_prompts(pipe.tokenizer, STYLES, "a [V] face", "sks"), batch[2][:2]
    with torch.no_grad():
        face = pipe.unet(rows.noisy, rows.timesteps, plain).sample
        styled = pipe.unet(rows.noisy, rows.timesteps, pipe.text_encoder(prompts.styled[rows.styles])[0]).sample
        with trainable.adapters.disabled(ADAPTER):
            class_states = pipe.text_encoder(torch.cat([prompts.styled_class[rows.styles], prompts.plain_class]))[0]
            base_styled = pipe.unet(rows.noisy, rows.timesteps, class_states[:2]).sample
            base_plain = pipe.unet(rows.noisy, rows.timesteps, class_states[2:].expand(2, -1, -1)).sample
    separate = 0.5 * (styled - (face + base_styled - base_plain)).pow(2).mean()
    torch.testing.assert_close(joint.detach(), separate, rtol=1e-4, atol=1e-7)


def test_the_reference_is_encoded_once_per_run(adapted, faces, monkeypatch):
    # The VAE is never adapted, so its posterior of the reference serves every step.
    model, trainable = adapted
    term = style_term(model, trainable, STYLES, faces[:1])
    encodes = []
    real = model.pipe.vae.encode
    monkeypatch.setattr(model.pipe.vae, "encode", lambda x: encodes.append(x) or real(x))
    first, second = (term.draw(model, torch.Generator().manual_seed(seed)) for seed in (0, 1))
    assert len(encodes) == 1 and not torch.equal(first.noisy, second.noisy)
    assert torch.equal(term.draw(model, torch.Generator().manual_seed(0)).noisy, first.noisy)


def test_the_finetune_loss_is_unchanged_by_the_rows_riding_along(adapted, faces):
    model, trainable = adapted
    config = TrainConfig(steps=1, batch_size=3, augment=True)
    ids = model.pipe.tokenizer(["a sks face"], padding="max_length", return_tensors="pt",
                               max_length=model.pipe.tokenizer.model_max_length).input_ids
    term = style_term(model, trainable, STYLES, faces[:1], weight=0.0)
    subjects = [Subject(faces[:1], 0)]
    with torch.no_grad():
        alone = denoising_losses(model, subjects, config, 0, 0, ids)
        riding = denoising_losses(model, subjects, config, 0, 0, ids, styles=term)
    torch.testing.assert_close(riding, alone, rtol=1e-4, atol=1e-7)


def test_a_merged_adapter_is_refused_for_the_base_models_predictions(tiny_sd, faces):
    from lowdim_sd.modes import relaxed_trainable

    model = load_sd(str(tiny_sd))
    lowdim.Adapters(model.modules).add("initial", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    trainable = relaxed_trainable(model, "initial", rank=2, metadata={"base_model": "tiny", "token": "sks"})
    config = TrainConfig(steps=1, keep_styles=0.5, style_prompts=tuple(STYLES), augment=False)
    with pytest.raises(lowdim.LowdimError, match=ADAPTER):
        train(model, [Subject(faces[:1], 0)], trainable, config, progress=False)


def job(tiny_sd, face, out, **kwargs) -> PersonalizeJob:
    return PersonalizeJob(model=str(tiny_sd), image=face, out=out, **{"steps": 2, "preview": False, "crop": False,
                                                                       **kwargs})


def test_personalize_keeps_the_prediction_unmerged_and_records_the_weight(tiny_sd, face, tmp_path):
    plain = personalize(job(tiny_sd, face, tmp_path / "a"), progress=False)
    kept = personalize(job(tiny_sd, face, tmp_path / "b", keep_styles=0.5), progress=False)
    file = lowdim.read_adapter(kept.adapter)
    assert file.space.config.merge_frozen is False and lowdim.read_adapter(plain.adapter).space.config.merge_frozen
    assert json.loads(file.metadata["extra"])["keep_styles"] == 0.5
    differs = [not torch.equal(v, lowdim.read_adapter(plain.adapter).params[layer][k])
               for layer, params in file.params.items() for k, v in params.items() if not k.startswith("c0_")]
    assert any(differs)


@pytest.mark.parametrize("options, named", [
    ({"keep_styles": -0.1}, r"PersonalizeJob\(keep_styles=...\) must be a number >= 0"),
    ({"keep_styles": float("nan")}, r"PersonalizeJob\(keep_styles=...\) must be a number >= 0"),
])
def test_a_bad_weight_is_one_line_before_the_model_loads(tiny_sd, face, tmp_path, options, named):
    with pytest.raises(lowdim.LowdimError, match=named):
        personalize(job(tiny_sd, face, tmp_path / "c", **options), progress=False)
    assert not (tmp_path / "c").exists()


def test_keeping_styles_without_a_finetune_is_refused(tiny_sd, face, tmp_path, make_hypernet):
    with pytest.raises(lowdim.LowdimError, match=r"PersonalizeJob\(keep_styles=...\) shapes the fast finetune, which "
                                                 r"PersonalizeJob\(only_hyper=True\) skips"):
        personalize(job(tiny_sd, face, tmp_path / "d", hypernet=make_hypernet(2), only_hyper=True, keep_styles=0.2),
                    progress=False)


def test_personalize_and_the_bench_row_both_add_the_loss(tiny_sd, face, tmp_path, make_hypernet, faces,
                                                         monkeypatch):
    import dataclasses

    from lowdim_sd import style_delta
    from lowdim_sd.bench.methods import METHODS, personalize_subject
    from lowdim_sd.personalize import finetune_config
    from lowdim_sd.personalize_resolve import resolve_run

    config = finetune_config(resolve_run(job(tiny_sd, face, tmp_path / "e", keep_styles=0.3)))
    assert config.keep_styles == 0.3 and "a [V] face at night" in " ".join(config.style_prompts)
    calls = []
    real = style_delta.StyleTerm.loss
    monkeypatch.setattr(style_delta.StyleTerm, "loss", lambda *a, **k: calls.append(1) or real(*a, **k))
    row = dataclasses.replace(METHODS["ours-styles"], steps=2)
    personalize_subject(load_sd(str(tiny_sd)), row, faces[0], tmp_path / "bench", make_hypernet(2))
    assert len(calls) == 2  # one per step


def test_a_run_with_kept_styles_resumes_from_its_checkpoint(adapted, faces, tmp_path):
    # Its settings go through JSON in the checkpoint; the resumed run must read them as the same.
    from lowdim_sd.modes import relaxed_trainable

    model, _ = adapted
    lowdim.Adapters(model.modules).delete(ADAPTER)
    lowdim.Adapters(model.modules).add("initial", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    trainable = relaxed_trainable(model, "initial", rank=2, merge_frozen=False,
                                  metadata={"base_model": "tiny", "token": "sks"})
    config = TrainConfig(steps=2, keep_styles=0.5, style_prompts=tuple(STYLES), augment=False, checkpoint_every=1)
    train(model, [Subject(faces[:1], 0)], trainable, config, out_dir=tmp_path / "run", progress=False)
    resumed = train(model, [Subject(faces[:1], 0)], trainable, TrainConfig(**{**config.__dict__, "steps": 3}),
                    out_dir=tmp_path / "run", resume=True, progress=False)
    assert resumed.start_step == 2 and len(resumed.losses) == 1
