"""Review EC's surviving mutants of train-hypernet, pinned: every trainable tensor of the network trains (E27), the
standardized weight term weighs coordinates alike, not shape groups (E28), the frozen SD model collects no gradients
(E08), and an infinite loss stops the run as a NaN does (E29)."""

from __future__ import annotations

import pytest
import torch
from hypertrain_jobs import HYPER, job  # tests/sd, on the path as pytest puts it
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hypertrain_losses import LAYERS, random_params  # tests/sd, on the path as pytest puts it

import lowdim
import lowdim_sd.hypertrain as engine
import lowdim_sd.hypertrain_losses as hl
from lowdim.hyper import HyperConfig, HyperNetwork
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.train import TrainingDiverged


def encoder_parts(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in net.named_parameters() if name.startswith("encoder.")}


# -- E27 ----------------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("frozen", [True, False], ids=["frozen-backbone", "trained-backbone"])
def test_a_step_moves_the_encoders_projection_and_only_an_unfrozen_backbone(weights, tmp_path, monkeypatch, frozen):
    """--freeze-encoder keeps the backbone fixed but "its projection still trains"; without it the backbone trains."""
    built: list[dict[str, torch.Tensor]] = []
    real = engine._network

    def remember_the_start(*args, **kwargs):
        net, step = real(*args, **kwargs)
        built.append(encoder_parts(net))
        return net, step

    monkeypatch.setattr(engine, "_network", remember_the_start)
    result = train_hypernet(job(weights, tmp_path / "h", alpha=0.0, steps=1, val_every=0, checkpoint_every=0,
                                hyper={**HYPER, "freeze_encoder": frozen}), progress=False)
    (start,) = built
    after = encoder_parts(result.net)
    moved = {name for name, before in start.items() if not torch.equal(after[name], before)}
    assert {"encoder.proj.weight", "encoder.proj.bias", "encoder.norm.weight", "encoder.norm.bias"} <= moved
    # the ViT's pooler is never read (the decoder attends to the token features), so it gets no gradient
    backbone = {name for name in start if name.startswith("encoder.backbone.") and ".pooler." not in name}
    assert backbone and backbone & moved == (set() if frozen else backbone)


# -- E28 ----------------------------------------------------------------------------------------------------------
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 3))
@settings(max_examples=15, deadline=None)
def test_the_standardized_weight_term_is_the_mean_over_every_coordinate(seed, batch):
    """Docs: "the mean squared error in z". Where layers fall into shape groups of different sizes, each coordinate
    counts once, so a small group's coordinates weigh no more than a big group's."""
    torch.manual_seed(0)
    net = HyperNetwork(HyperConfig(**{**HYPER, "standardize": True}), lowdim.get_space("lidb", a=10, b=10), LAYERS)
    net.set_target_statistics(random_params(net, 6, seed, scale=3.0))
    predicted, target = random_params(net, batch, seed + 1), random_params(net, batch, seed + 2)
    pairs = list(zip(net.standardized(predicted), net.standardized(target), strict=True))
    assert len({z[0].numel() for z, _ in pairs}) > 1  # groups of unequal size: weighing groups alike would differ
    errors = torch.cat([(zp - zt).flatten(1) for zp, zt in pairs], dim=1)
    torch.testing.assert_close(hl.standardized_loss(net, predicted, target), errors.pow(2).mean(),
                               rtol=1e-5, atol=1e-7)


# -- E08 ----------------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("one_thread")
def test_the_diffusion_term_leaves_the_frozen_sd_model_without_gradients(weights, tmp_path, monkeypatch):
    """The diffusion term's gradient flows into the network, not into the UNet, text encoder or VAE, whose
    gradients would hold another copy of the model in memory every step."""
    made: list[hl.Diffusion] = []
    real = hl.Diffusion.__init__

    def keep(self, *args, **kwargs):
        real(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(hl.Diffusion, "__init__", keep)
    result = train_hypernet(job(weights, tmp_path / "h", alpha=1.0, beta=0.0, steps=1, val_every=0,
                                checkpoint_every=0), progress=False)
    assert result.losses[0] > 0 and len(made) == 1
    pipe = made[0].model.pipe
    for name, part in (("UNet", pipe.unet), ("text encoder", pipe.text_encoder), ("VAE", pipe.vae)):
        params = list(part.parameters())
        assert not any(p.requires_grad for p in params), f"the frozen {name} is left trainable"
        assert all(p.grad is None for p in params), f"the frozen {name} collected gradients"


# -- E29 ----------------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("one_thread")
def test_an_infinite_loss_stops_the_run_and_says_to_lower_the_lr(weights, tmp_path, monkeypatch):
    real = engine.pair_losses

    def infinite(*args, **kwargs):
        losses = real(*args, **kwargs)
        losses["loss"] = losses["loss"] * float("inf")
        return losses

    monkeypatch.setattr(engine, "pair_losses", infinite)
    with pytest.raises(TrainingDiverged, match=r"loss became inf at step 1; try a lower --lr"):
        train_hypernet(job(weights, tmp_path / "h", alpha=0.0, steps=1, val_every=0, checkpoint_every=0),
                       progress=False)
