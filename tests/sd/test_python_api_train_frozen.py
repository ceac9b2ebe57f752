"""A model handed to ``run_train`` that the caller loaded unfrozen (as ``StableDiffusionPipeline.from_pretrained``
gives it: every parameter ``requires_grad=True``) trains only the adapter: the UNet, text encoder and VAE are frozen
for the run's time, so no gradient of a base weight is ever computed, and each parameter's flag comes back as it was
given, with no ``.grad`` left on it, however the run ends."""

from __future__ import annotations

import pytest
import torch

import lowdim_sd.train as engine
from lowdim_sd import runs
from lowdim_sd.loading import load_sd
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

TI = {"space": "ti", "space_options": {"vectors": 2, "init_word": "face"}}


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """One torch thread, as the other SD tests: tiny models run no faster on more."""


def base_parameters(model) -> dict[str, torch.nn.Parameter]:
    pipe = model.pipe
    return {f"{part}.{name}": param for part in ("unet", "text_encoder", "vae")
            for name, param in getattr(pipe, part).named_parameters()}


@pytest.fixture
def unfrozen(tiny_sd):
    """The tiny model as diffusers hands it over: UNet and VAE trainable; the text encoder mixed, to see each
    flag come back as it was, not all set to one value."""
    model = load_sd(str(tiny_sd))
    model.pipe.unet.requires_grad_(True)
    model.pipe.vae.requires_grad_(True)
    for index, param in enumerate(model.pipe.text_encoder.parameters()):
        param.requires_grad_(index % 2 == 0)
    return model


def flags(model) -> dict[str, bool]:
    return {name: param.requires_grad for name, param in base_parameters(model).items()}


def spy_on_steps(monkeypatch, model, stop: type[BaseException] | None = None) -> list[list[str]]:
    """The base parameters (those of the model as given, not the adapter's) that require grad at each step; with
    ``stop``, the second step raises it."""
    base = base_parameters(model)
    seen: list[list[str]] = []
    real = engine._one_step

    def step(*args, **kwargs):
        seen.append([name for name, param in base.items() if param.requires_grad])
        if stop is not None and len(seen) == 2:
            raise stop("stopped")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_one_step", step)
    return seen


@pytest.fixture(scope="module")
def initial(tiny_sd, tmp_path_factory):
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    folder = tmp_path_factory.mktemp("initial")
    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, folder, "face")[0]
    return run_train(TrainJob(model=str(tiny_sd), images=[face], out=folder / "run",
                              config=TrainConfig(steps=1)), progress=False).outputs[0]


@pytest.mark.parametrize("mode", ["lidb", "ti", "relaxed"])
def test_an_unfrozen_model_trains_only_the_adapter_and_comes_back_with_its_flags(
        unfrozen, tiny_sd, face, tmp_path, monkeypatch, mode, initial):
    options = TI if mode == "ti" else {"initial": initial} if mode == "relaxed" else {}
    given = flags(unfrozen)
    seen = spy_on_steps(monkeypatch, unfrozen)
    run_train(TrainJob(model=str(tiny_sd), images=[face], out=tmp_path, config=TrainConfig(steps=2), **options),
              progress=False, model=unfrozen)
    assert seen == [[], []]  # no base weight took part in autograd at any step
    assert flags(unfrozen) == given
    assert [name for name, param in base_parameters(unfrozen).items() if param.grad is not None] == []


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_the_flags_come_back_after_a_failed_or_stopped_run(unfrozen, tiny_sd, face, tmp_path, monkeypatch, stop):
    given = flags(unfrozen)
    spy_on_steps(monkeypatch, unfrozen, stop)
    with pytest.raises(runs.Interrupted if stop is KeyboardInterrupt else RuntimeError):
        run_train(TrainJob(model=str(tiny_sd), images=[face], out=tmp_path, config=TrainConfig(steps=3)),
                  progress=False, model=unfrozen)
    assert flags(unfrozen) == given
    assert [name for name, param in base_parameters(unfrozen).items() if param.grad is not None] == []


def test_a_gradient_the_caller_left_on_a_weight_is_theirs_and_stays(unfrozen, tiny_sd, face, tmp_path):
    weight = unfrozen.pipe.unet.conv_in.weight
    theirs = torch.ones_like(weight)
    weight.grad = theirs
    run_train(TrainJob(model=str(tiny_sd), images=[face], out=tmp_path, config=TrainConfig(steps=1)),
              progress=False, model=unfrozen)
    assert weight.grad is theirs and torch.equal(theirs, torch.ones_like(weight))
