"""How a training batch is laid out: K subjects side by side, copies of one subject, per-subject clipping."""

from __future__ import annotations

import pytest
import torch

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, prompt_ids, train
from lowdim_sd.train_loss import clip_per_subject, denoising_losses, interleave

# The gradients of K subjects at once equal each one's alone to float32 rounding, but AdamW divides each coordinate
# by its gradient's running size, so where a gradient is near zero it turns that rounding into a fraction of lr: LiDB
# at 2e-2 differed by 1.2e-4 on a drawn case. At 2e-3 this case differs by 5e-7 while training moves the parameters
# by 8e-3, so a subject trained on another's images or under another's adapter fails by far. (LoRA, whose down factor
# starts with a zero gradient, can differ by 9% of lr even at 2e-3: test_batched_subjects_property.py uses SGD.)
BATCHING_LR, SAME, MOVED = 2e-3, 1e-4, 2e-3


def test_batched_subjects_equal_training_each_alone(tiny_sd, faces):
    """K subjects in one batch, two images each per step, reach the parameters each reaches trained alone."""
    other = torch.flip(faces, dims=[-1]) * 0.5
    subjects = [Subject(faces, 11), Subject(other, 12), Subject(faces[:1], 13)]
    config = TrainConfig(steps=4, learning_rate=BATCHING_LR, augment=True, batch_size=2)
    model = load_sd(str(tiny_sd))
    batched = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None), subject_names=["a", "b", "c"])
    train(model, subjects, batched, config, progress=False)
    together = batched.state()
    for index, subject in enumerate(subjects):
        alone_model = load_sd(str(tiny_sd))
        alone = adapter_trainable(alone_model, lowdim.get_space("lidb"), resolve_layers(None))
        start = {key: value.clone() for key, value in alone.state().items()}
        train(alone_model, [subject], alone, config, progress=False)
        trained = alone.state()
        assert max(float((trained[key] - start[key]).abs().max()) for key in trained) > MOVED  # a change to compare
        for key, value in trained.items():
            assert torch.allclose(together[key][index], value, atol=SAME, rtol=0), (
                key, index, float((together[key][index] - value).abs().max()))


class _TwoSubjects:
    def __init__(self, parameters):
        self.parameters, self.num_subjects = parameters, 2


def test_clipping_is_per_subject_a_small_gradient_is_left_alone():
    param = torch.zeros(2, 3, requires_grad=True)
    param.grad = torch.tensor([[30.0, 40.0, 0.0], [0.3, 0.4, 0.0]])  # norms 50 and 0.5
    clip_per_subject(_TwoSubjects([param]), 1.0)
    assert torch.allclose(param.grad[1], torch.tensor([0.3, 0.4, 0.0]))
    assert torch.allclose(param.grad[0].norm(), torch.tensor(1.0), atol=1e-4)


def test_sample_j_of_a_batch_belongs_to_subject_j_mod_k():
    parts = [torch.full((2, 1), float(subject)) for subject in range(3)]  # 2 images per subject
    assert interleave(parts).flatten().tolist() == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_one_subjects_copies_share_one_prompt_encoding_with_the_same_loss_and_gradient(tiny_sd, faces, batch_size,
                                                                                        monkeypatch):
    # The prompt is encoded once and broadcast over the copies; encoding it once per copy, as several
    # subjects must, gives the same loss and the same gradient on the text encoder's adapter.
    from lowdim_sd import train_loss as engine

    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lora"), resolve_layers(None))
    with torch.no_grad():
        for param in trainable.parameters:
            param.normal_(0, 0.1)
    config = TrainConfig(batch_size=batch_size, augment=True)
    ids = model.pipe.tokenizer("a sks face", padding="max_length", max_length=77, return_tensors="pt").input_ids

    def loss_and_grads():
        loss = denoising_losses(model, [Subject(faces[:2], seed=3)], config, 5, 0, ids).mean()
        return loss.detach(), torch.autograd.grad(loss, trainable.parameters)

    shared, shared_grads = loss_and_grads()
    monkeypatch.setattr(engine, "_encode_prompt", lambda encoder, input_ids, subjects, samples:
                        encoder(input_ids.repeat(samples, 1)))
    repeated, repeated_grads = loss_and_grads()
    torch.testing.assert_close(shared, repeated)
    for a, b in zip(shared_grads, repeated_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    assert any(g.abs().sum() > 0 for g in shared_grads)


def test_batched_per_subject_losses_are_each_subject_s_own(tiny_sd):
    """denoising_losses' (K,) result, entry i, is subject i's loss as computed with subject i alone: the gradient
    only sees their sum, so a pairing with the wrong subject would fail nothing else."""
    generator = torch.Generator().manual_seed(7)
    subjects = [Subject(torch.rand(1 + i % 2, 3, 16, 16, generator=generator) * 2 - 1, 100 + i) for i in range(3)]
    config = TrainConfig(batch_size=2, augment=False)
    model = load_sd(str(tiny_sd))
    ids = prompt_ids(model, TrainConfig(token="sks"))
    together = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None), subject_names=["a", "b", "c"])
    with torch.no_grad():
        batched = denoising_losses(model, subjects, config, 3, 0, ids)
    lowdim.Adapters(model.modules).delete(together.name)
    adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))  # the same seed: each one's start
    with torch.no_grad():
        each = torch.stack([denoising_losses(model, [subject], config, 3, 0, ids)[0] for subject in subjects])
    assert len(set(each.tolist())) == 3  # the subjects differ, and so do their losses
    torch.testing.assert_close(batched, each, atol=1e-6, rtol=1e-5)


def test_a_non_square_subject_trains(tiny_sd):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    pictures = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    result = train(model, [Subject(pictures, 1)], trainable, TrainConfig(steps=1, learning_rate=BATCHING_LR),
                   progress=False)
    assert len(result.losses) == 1 and result.losses[0] > 0


@pytest.mark.parametrize(("sizes", "words"), [
    ([(16, 16), (16, 24)], "subject 1's pictures are 16x24 (height x width), subject 0's 16x16"),
    ([(16, 15)], "subject 0's pictures are 16x15 (height x width): each side must be a multiple of 2")])
def test_pictures_the_batch_cannot_take_are_one_line_before_any_model_call(tiny_sd, sizes, words, monkeypatch):
    model = load_sd(str(tiny_sd))
    names = [f"s{i}" for i in range(len(sizes))] if len(sizes) > 1 else None
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None), subject_names=names)

    def called(*args, **kwargs):
        raise AssertionError("a model was called")

    for part, call in ((model.pipe.vae, "encode"), (model.pipe.unet, "forward"), (model.pipe.text_encoder, "forward")):
        monkeypatch.setattr(part, call, called)
    subjects = [Subject(torch.zeros(1, 3, h, w), i) for i, (h, w) in enumerate(sizes)]
    with pytest.raises(LowdimError) as refused:
        train(model, subjects, trainable, TrainConfig(steps=1), progress=False)
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_the_reported_loss_of_k_subjects_is_the_mean_of_their_losses(tiny_sd):
    """TrainResult.losses (the progress bar's loss, and what stop_if_diverged judges) is the step's mean over the
    subjects of each one's denoising loss, as one subject alone reports its own: not their sum."""
    generator = torch.Generator().manual_seed(5)
    subjects = [Subject(torch.rand(1, 3, 16, 16, generator=generator) * 2 - 1, 10 + i) for i in range(3)]
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None), subject_names=["a", "b", "c"])
    config = TrainConfig(steps=1, batch_size=2, augment=False)
    with torch.no_grad():  # the loss at the start, which the one step is taken from
        each = denoising_losses(model, subjects, config, 0, 0, prompt_ids(model, config)).tolist()
    result = train(model, subjects, trainable, config, progress=False)
    assert result.losses[0] == pytest.approx(sum(each) / len(each), rel=1e-5)
