"""Review EC's surviving mutants of the hypernetwork, pinned: eq. 2's supervision of an earlier iterate trains the
network (E14), and a standardizing network fit on a single training identity works in θ units (E02)."""

from __future__ import annotations

import pytest
import torch
from hyper_groupings import lidb_over_groupings  # noqa: F401  (the lidb fixture: one shape group and three)
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hyper import images, make_net, random_target
from test_hyper_levers import random_targets

import lowdim
from lowdim.hyper import weight_loss

ITERATIONS = 3


# -- E14: every iterate return_all gives keeps its graph ----------------------------------------------------------
@pytest.mark.parametrize("k", range(ITERATIONS))
def test_supervising_any_one_iterate_trains_the_heads_decoder_and_projection(lidb, k):
    """Eq. 2 supervises θ_1..θ_s, not θ_s alone (train-hypernet's weight term "of every iterate",
    --diffusion-iterates all): an earlier iterate's loss alone must reach every trained part of the network."""
    net = make_net(lidb, head_init_scale=1.0, iterations=ITERATIONS)
    iterates = net(images(2), return_all=True)
    assert len(iterates) == ITERATIONS
    assert all(v.requires_grad for params in iterates[k].values() for v in params.values()), f"θ_{k + 1} has no graph"
    weight_loss(iterates[k], random_target(net, 2, seed=3)).backward()
    for part in (*net.heads.linears, *net.embed.linears, net.decoder, net.encoder.proj):  # every group's maps
        grads = [p.grad for p in part.parameters()]
        assert grads and all(g is not None for g in grads), f"iterate {k + 1}'s loss leaves {part} untrained"
        assert sum(float(g.abs().sum()) for g in grads) > 0


# -- E02: standardizing on one identity ---------------------------------------------------------------------------
@given(seed=st.integers(0, 2**16), scale=st.floats(1e-3, 10.0), shift=st.floats(-3.0, 3.0))
@settings(max_examples=15, deadline=None)
def test_one_training_identity_leaves_a_standardizing_network_in_theta_units(lidb: lowdim.Space, seed: int,
                                                                            scale: float, shift: float):
    """One identity has no spread to measure: its θ is the mean and the spread is 1, so z is θ's offset from it and
    each refinement step moves θ by its own size (a spread of ~0 would scale z by ~1e8 and pin θ to the mean)."""
    net = make_net(lidb, standardize=True).eval()
    one = {layer: {k: v * scale for k, v in p.items()} for layer, p in random_targets(net, 1, seed).items()}
    net.set_target_statistics(one)
    moved = {layer: {k: v + shift for k, v in p.items()} for layer, p in one.items()}
    for z in net.standardized(moved):
        torch.testing.assert_close(z, torch.full_like(z, shift), rtol=1e-5, atol=1e-5)
    stepped = net.to_params([torch.full_like(z, shift) for z in net.standardized(one)])
    for layer, params in moved.items():
        for name, value in params.items():
            torch.testing.assert_close(stepped[layer][name], value, rtol=1e-5, atol=1e-5)
