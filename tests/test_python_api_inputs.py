"""The core Python API used from a notebook: adapters made under any autograd mode work in every mode later
(review D, finding 3), and the hypernetwork refuses images it would misread in one line (finding 10)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import LowdimError

MODES = {"grad": contextlib.nullcontext, "no_grad": torch.no_grad, "inference": torch.inference_mode}


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4))
    model.requires_grad_(False)
    return model


def _space() -> lowdim.Space:
    return lowdim.get_space("lidb", a=2, b=2)  # params and frozen bases (buffers) both


def _adapter_file(tmp_path):
    model = _model()
    adapters = lowdim.inject(model, _space(), ["0", "1"], seed=3)
    with torch.no_grad():
        for param in adapters.parameters():
            param.add_(0.5)
    return lowdim.save_adapter(tmp_path / "a.safetensors", model), adapters.tensors()


def _made_in(how: str, mode: str, tmp_path) -> nn.Module:
    """A model whose adapter was added, loaded or filled (``how``) inside autograd ``mode``."""
    path, tensors = _adapter_file(tmp_path)
    model = _model()
    if how == "load_tensors":
        lowdim.inject(model, _space(), ["0", "1"], seed=3)
    with MODES[mode]():
        if how == "add":
            lowdim.inject(model, _space(), ["0", "1"], seed=3)
        elif how == "load":
            lowdim.load_adapter(path, model)
        else:
            lowdim.Adapters(model).load_tensors("default", tensors)
    return model


@pytest.mark.parametrize("later", list(MODES))
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("how", ["add", "load", "load_tensors"])
def test_an_adapter_made_in_any_mode_runs_trains_and_reloads_in_every_mode(how, mode, later, tmp_path):
    model = _made_in(how, mode, tmp_path)
    assert not any(t.is_inference() for t in [*model.parameters(), *model.buffers(), *model.state_dict().values()])
    x = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    with MODES[later]():
        for _ in range(2):  # the second call reads the factors kept by the first
            assert torch.allclose(model(x), expected)
    params = lowdim.Adapters(model).parameters()
    optimizer = torch.optim.SGD(params, lr=0.1)  # training later: a step writes the adapter in place
    model(x).square().sum().backward()
    optimizer.step()
    with torch.no_grad():
        assert not torch.allclose(model(x), expected)
    model.load_state_dict(model.state_dict())  # the state guard's buffers take a copy in place


# -- the hypernetwork's images ------------------------------------------------------------------
@pytest.fixture(scope="module", params=["transformer", "retrieval"])  # both heads read images the same way
def net(request):
    transformers = pytest.importorskip("transformers")
    from lowdim.hyper import HyperConfig, build_hypernet
    from lowdim.spaces.base import LayerSpec

    torch.manual_seed(0)
    vit = transformers.ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32)
    config = HyperConfig(architecture=request.param, bank_size=1, encoder_config=vit, width=16, attention_heads=2,
                         feedforward=32, iterations=1)
    return build_hypernet(config, lowdim.get_space("lora", rank=1), [LayerSpec("q", 4, 4)]).eval()


def _pixels(batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1


def test_the_hypernetwork_takes_float_images_in_minus_one_to_one(net):
    with torch.no_grad():
        assert net(_pixels(2))["q"]["down"].shape[0] == 2


@pytest.mark.parametrize("images, named", [
    (lambda: ((_pixels() + 1) * 127.5).to(torch.uint8), "uint8 tensor"),  # torchvision.io.read_image's kind
    (lambda: _pixels()[0], "shape (3, 16, 16)"),  # one image, unbatched
    (lambda: _pixels()[:, :1], "shape (1, 1, 16, 16)"),  # grey
    (lambda: np.zeros((1, 3, 16, 16), np.float32), "ndarray"),
    (lambda: __import__("PIL.Image").Image.new("RGB", (16, 16)), "Image"),
], ids=["uint8", "unbatched", "one-channel", "numpy", "pil"])
def test_images_the_hypernetwork_would_misread_are_one_line_naming_what_it_expects(net, images, named):
    with pytest.raises(LowdimError) as error:
        net(images())
    message = str(error.value)
    assert "\n" not in message and named in message
    assert "(N, 3, H, W)" in message and "[-1, 1]" in message
