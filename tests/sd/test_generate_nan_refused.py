"""A picture whose latents come out NaN (an adapter with finite but absurd values, or a scale that overflows the
model's numbers) is named in one line and the command exits non-zero, instead of a black PNG, a numpy
"invalid value" warning and exit 0 (review BH9). The check is one ``isfinite`` on a call's final latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lowdim
from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.generate import GenerateConfig, attach_adapters, generate
from lowdim_sd.loading import load_sd

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def absurd(tiny_sd, tmp_path_factory):
    """A LoRA adapter of the tiny model whose values (1e18) fit fp32, and so load, but overflow any forward."""
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    adapters = lowdim.inject(model.modules, lowdim.get_space("lora", rank=2), ["unet.*attn2.to_v"], name="x")
    with torch.no_grad():
        for param in adapters.parameters("x"):
            param.fill_(1e18)
    return lowdim.save_adapter(tmp_path_factory.mktemp("absurd") / "absurd.safetensors", adapters, "x")


def test_nan_latents_are_named_in_one_line_with_the_picture_and_the_adapter(tiny_sd, absurd):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(model, [(absurd, 1.0)])
    config = GenerateConfig(prompts=["a face", "a face at night"], seeds=[0, 1], steps=2, resolution=16)
    with pytest.raises(LowdimError) as error:
        generate(model, config)
    said = str(error.value)
    assert said.startswith("the picture of 'a face' (seed 0) came out as NaN (not a number)"), said
    assert str(absurd) in said and "scale" in said


def test_the_generate_command_exits_1_and_writes_no_black_picture(tiny_sd, absurd, tmp_path, capsys):
    out = tmp_path / "images"
    code = main(["generate", "-m", str(tiny_sd), "-a", str(absurd), "-p", "a face", "--steps", "2",
                 "--resolution", "16", "-o", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "came out as NaN" in err and "Traceback" not in err and "invalid value" not in err
    assert not list(out.glob("*.png"))


def test_finite_pictures_are_drawn_as_before_with_one_check_a_call(tiny_sd, monkeypatch):
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    config = GenerateConfig(prompts=["a face", "a face at night"], seeds=[0], steps=3, resolution=16, batch=1)
    before = generate(model, config)
    checks, isfinite = [], torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda tensor: checks.append(tensor.shape) or isfinite(tensor))
    after = generate(model, config)
    assert len(checks) == 2  # one a pipeline call, on its final latents, not one a step
    for old, new in zip(before, after, strict=True):
        assert np.array_equal(np.asarray(old.image), np.asarray(new.image))
