"""Phase 1's loss of one batch (eq. 2), without a diffusion model: which iterates the diffusion term judges,
and the scale of the standardized weight term. A stand-in Diffusion records what pair_losses gives it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypertrain_jobs import HYPER  # tests/sd, on the path as pytest puts it
from hypothesis import given, settings
from hypothesis import strategies as st

import lowdim
import lowdim_sd.hypertrain_losses as hl
from lowdim.hyper import HyperConfig, HyperNetwork, weight_loss
from lowdim.spaces.base import LayerSpec
from lowdim_sd.hypertrain import HyperTrainJob
from lowdim_sd.train import TrainConfig

LAYERS = [LayerSpec("q", 16, 8), LayerSpec("k", 16, 8), LayerSpec("o", 12, 12)]
DIFFUSION_LOSS = 7.0


def tiny_net(**options) -> HyperNetwork:
    torch.manual_seed(0)
    return HyperNetwork(HyperConfig(**{**HYPER, **options}), lowdim.get_space("lidb", a=6, b=5), LAYERS)


def random_params(net: HyperNetwork, count: int, seed: int, scale: float = 1.0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {layer.name: {name: scale * torch.randn(count, *shape, generator=generator)
                         for name, shape in net.space.param_shapes(layer).items()} for layer in net.layers}


class RecordingDiffusion:
    """Stands in for hl.Diffusion: keeps the iterates and teacher of each call, returns a fixed D."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[dict], dict | None]] = []

    def loss(self, iterates, images, seeds, step, augment, teacher=None):
        self.calls.append((iterates, teacher))
        return torch.tensor(DIFFUSION_LOSS)


def assert_same_params(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for layer, params in want.items():
        for name, value in params.items():
            torch.testing.assert_close(got[layer][name], value, rtol=0, atol=0)


@pytest.mark.parametrize("iterates", ["last", "all"])
def test_the_diffusion_term_judges_the_last_iterate_or_every_iterate_and_validation_the_last(iterates):
    net = tiny_net(head_init_scale=1.0).eval()  # iterates far apart: judging the wrong one shows
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    target = random_params(net, 2, seed=3)
    job = HyperTrainJob(weights=Path("unused"), hyper=HYPER, alpha=0.3, beta=2.0, diffusion_iterates=iterates)
    batch = (images, target, torch.tensor([4, 7]), None)
    diffusion = RecordingDiffusion()
    with torch.no_grad():
        expected = net(images, return_all=True)
        losses = hl.pair_losses(net, diffusion, batch, 1, job, train=True)
        hl.pair_losses(net, diffusion, batch, 1, job, train=False)
    (trained, teacher), (validated, _) = diffusion.calls
    assert teacher is None  # the default target is the noise
    judged = expected if iterates == "all" else expected[-1:]
    assert len(trained) == len(judged) == (2 if iterates == "all" else 1)
    for got, want in zip(trained, judged, strict=True):
        assert_same_params(got, want)
    assert len(validated) == 1
    assert_same_params(validated[0], expected[-1])
    weight = torch.stack([weight_loss(theta, target) for theta in expected]).mean()
    torch.testing.assert_close(losses["weight_loss"], weight)
    torch.testing.assert_close(losses["loss"], 2.0 * weight + 0.3 * DIFFUSION_LOSS)


@pytest.fixture(scope="module")
def standardizing_net() -> HyperNetwork:
    return tiny_net(standardize=True)


@settings(max_examples=25, deadline=None)
@given(count=st.integers(4, 12), seed=st.integers(0, 2**16), spread=st.floats(1e-3, 1e3),
       shift=st.floats(-3.0, 3.0))
def test_the_standardized_weight_loss_is_one_for_the_mean_and_shift_squared_for_a_shift_in_spreads(
        standardizing_net, count, seed, spread, shift):
    """Mean over coordinates of (z_pred - z)²: the same scale whatever the adapter's size, so β keeps its meaning."""
    net = standardizing_net
    targets = random_params(net, count, seed, scale=spread)
    net.set_target_statistics(targets)
    mean = {layer: {name: value.mean(0, keepdim=True).expand_as(value) for name, value in params.items()}
            for layer, params in targets.items()}
    torch.testing.assert_close(hl.standardized_loss(net, mean, targets), torch.tensor(1.0), rtol=1e-4, atol=1e-4)
    assert float(hl.standardized_loss(net, targets, targets)) == 0.0
    shifted = net.to_params([z + shift for z in net.from_params(targets)])  # every coordinate `shift` spreads off
    torch.testing.assert_close(hl.standardized_loss(net, shifted, targets), torch.tensor(shift**2),
                               rtol=1e-3, atol=1e-4)


@pytest.fixture(scope="module")
def far_apart_standardizing_net() -> HyperNetwork:
    return tiny_net(standardize=True, head_init_scale=1.0).eval()  # iterates far apart, in z as in θ


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), spread=st.floats(1e-2, 1e2))
def test_a_standardizing_network_trains_the_mean_standardized_loss_of_every_iterate(
        far_apart_standardizing_net, seed, spread):
    """Eq. 2 supervises every iterate k = 1..s, in the network's coordinates z as in plain ones."""
    net = far_apart_standardizing_net
    targets = random_params(net, 6, seed, scale=spread)
    net.set_target_statistics(targets)
    target = {layer: {name: value[:2] for name, value in params.items()} for layer, params in targets.items()}
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    job = HyperTrainJob(weights=Path("unused"), hyper={**HYPER, "standardize": True}, alpha=0.0, beta=2.0)
    with torch.no_grad():
        iterates = net(images, return_all=True)
        losses = hl.pair_losses(net, None, (images, target, torch.tensor([4, 7]), None), 1, job, train=True)
    each = torch.stack([hl.standardized_loss(net, theta, target) for theta in iterates])
    assert float(hl.standardized_loss(net, iterates[0], iterates[-1])) > 1e-2  # apart in z: one alone would show
    torch.testing.assert_close(losses["weight_loss"], each.mean())
    torch.testing.assert_close(losses["loss"], 2.0 * each.mean())
    plain = torch.stack([weight_loss(theta, target) for theta in iterates])  # reported as ‖θ̂_k − θ‖², to compare
    torch.testing.assert_close(losses["per_iterate"], plain)


class OverridingAdapters:
    """Stands in for Diffusion's lowdim.Adapters: keeps the tensors each override runs with."""

    def __init__(self) -> None:
        self.overrides: list[dict] = []

    @contextlib.contextmanager
    def override(self, name: str, tensors: dict) -> Iterator[None]:
        self.overrides.append(tensors)
        yield


def test_each_sample_of_every_iterate_denoises_its_own_subjects_image(monkeypatch):
    # Sample j carries identity j's prediction: its diffusion term must reconstruct identity j's image, not
    # another identity's (review CK, finding 2).
    received: list[list] = []

    def recording_losses(model, subjects, config, step, micro, input_ids, teacher=None):
        received.append(subjects)
        return torch.zeros(len(subjects))

    monkeypatch.setattr(hl, "denoising_losses", recording_losses)
    diffusion = object.__new__(hl.Diffusion)  # the SD model is never reached: denoising_losses is recorded
    diffusion.adapters, diffusion.model = OverridingAdapters(), None
    diffusion.config, diffusion.input_ids = TrainConfig(batch_size=1), torch.zeros(1, 4, dtype=torch.long)
    net = tiny_net(head_init_scale=1.0)
    iterates = [random_params(net, 2, seed=k) for k in range(3)]
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    diffusion.loss(iterates, images, seeds=[4, 7], step=1, augment=False)
    (subjects,) = received
    assert len(subjects) == len(iterates) * 2
    assert not torch.equal(images[0], images[1])
    for k, theta in enumerate(iterates):
        for j, seed in enumerate([4, 7]):
            sample = subjects[k * 2 + j]
            assert torch.equal(sample.images, images[j: j + 1]), f"iterate {k}'s sample {j} denoises another image"
            assert sample.seed == seed
            for layer, params in theta.items():  # and it runs with iterate k's prediction for identity j
                for name, value in params.items():
                    assert torch.equal(diffusion.adapters.overrides[0][layer][name][k * 2 + j], value[j])
