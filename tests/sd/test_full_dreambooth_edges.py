"""Full DreamBooth's promises a user relies on: every UNet weight trains, the text encoder trains only when asked
(and then really does), the saved model says which parts trained, a run resumed after Ctrl-C ends where an unbroken
one does, and --dtype auto keeps fp32 masters on a GPU too."""

from __future__ import annotations

import json

import pytest
import torch
from cli_train_runs import one_subject  # tests/sd, on the path as pytest puts it
from safetensors.torch import load_file

from lowdim_sd.loading import load_sd
from lowdim_sd.merged_model import RECORD
from lowdim_sd.modes import FullTrainable
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

PARTS = {"unet": "unet/diffusion_pytorch_model.safetensors", "text_encoder": "text_encoder/model.safetensors"}


def _weights(folder, part: str) -> dict[str, torch.Tensor]:
    """A part's saved tensors by name (the tiny base folder names the text encoder's without 'text_model.')."""
    return {key.removeprefix("text_model."): value for key, value in load_file(str(folder / PARTS[part])).items()}


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    return one_subject(tmp_path_factory.mktemp("refs"), side=16)


@pytest.fixture(scope="module")
def te_runs(tiny_sd, refs, tmp_path_factory):
    """`--full --train-text-encoder` for 2 steps, once unbroken and once stopped after step 1 and resumed: the two
    saved model folders."""
    folder = tmp_path_factory.mktemp("full")

    def run(name: str, steps: int, resume: bool = False, every: int = 0):
        config = TrainConfig(steps=steps, learning_rate=1e-3, checkpoint_every=every, augment=False)
        job = TrainJob(model=str(tiny_sd), images=[refs], full=True, train_text_encoder=True, out=folder / name,
                       resume=resume, config=config)
        run_train(job, progress=False)
        return folder / name / "model"

    whole = run("whole", 2)
    run("broken", 1, every=1)
    return whole, run("broken", 2, resume=True)


def test_every_unet_weight_and_the_text_encoder_train_when_asked(tiny_sd, te_runs):
    whole, _ = te_runs
    for part in PARTS:
        base, trained = _weights(tiny_sd, part), _weights(whole, part)
        still = [key for key in base if torch.equal(base[key], trained[key])]
        assert not still, (part, len(still), still[:3])  # every weight has a gradient in 2 steps of the tiny model


def test_the_saved_model_records_that_its_text_encoder_trained(te_runs):
    whole, _ = te_runs
    assert json.loads((whole / RECORD).read_text())["text_encoder_trained"] is True


def test_a_full_run_resumed_after_a_stop_ends_where_an_unbroken_one_does(te_runs):
    whole, resumed = te_runs
    for part in PARTS:  # Adam's moments and both parts' weights come back from the checkpoint
        a, b = _weights(whole, part), _weights(resumed, part)
        differ = [key for key in a if not torch.equal(a[key], b[key])]
        assert not differ, (part, len(differ), differ[:3])


def test_without_the_text_encoder_flag_only_the_unet_trains_and_the_text_encoder_computes_no_gradient(tiny_sd):
    model = load_sd(str(tiny_sd))
    trainable = FullTrainable(model, train_text_encoder=False)
    assert {id(p) for p in trainable.parameters} == {id(p) for p in model.pipe.unet.parameters()}
    assert all(p.requires_grad for p in model.pipe.unet.parameters())
    # A trainable but unoptimized text encoder would cost a whole gradient of it in every step, for nothing.
    assert not any(p.requires_grad for p in model.pipe.text_encoder.parameters())


class _Loaded(Exception):
    """Stops run_train as its model would load: what it asked for is all the test needs."""


@pytest.mark.parametrize(("full", "expected"), [(True, "fp32"), (False, "auto")])
def test_dtype_auto_loads_a_full_run_in_fp32_on_a_gpu_too(tiny_sd, refs, tmp_path, monkeypatch, full, expected):
    import lowdim_sd.workflows as workflows

    asked = []

    def load_sd_spy(source, device=None, dtype="auto", *args, **kwargs):
        asked.append((device, dtype))
        raise _Loaded

    monkeypatch.setattr(workflows, "load_sd", load_sd_spy)
    monkeypatch.setattr(workflows, "check_training_dtype", lambda device, dtype: None)  # no GPU here to ask
    # On CUDA, auto would mean fp16, which AdamW cannot update weights in: a full run asks for fp32 itself.
    job = TrainJob(model=str(tiny_sd), images=[refs], full=full, out=tmp_path / "o", device="cuda",
                   config=TrainConfig(steps=1))
    with pytest.raises(_Loaded):
        run_train(job, progress=False)
    assert asked == [("cuda", expected)]
