"""Token i of the decoder is layer i's (§4.2, "one token per target layer"): it must feed layer i's head.

A pairing that feeds layer i's token into another layer's head still trains (review CK, finding 1), so only a
test that follows one layer's token through ``HyperNetwork.delta`` tells the two apart.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lowdim.hyper import HyperNetwork

pytest.importorskip("transformers")
from test_hyper import LAYERS, images, make_net  # noqa: E402  (tests/, on the path as pytest puts it)


class PassThrough(nn.Module):
    """A decoder without attention or mixing: output token i is input token i."""

    def forward(self, tokens: Tensor, features: Tensor) -> Tensor:
        return tokens


def delta_change_per_layer(net: HyperNetwork, token: int) -> dict[str, float]:
    """How far each layer's delta moves when only layer ``token``'s positional embedding moves."""
    features = net.encode(images(2))
    state = net.zero_state(features)
    with torch.no_grad():
        before = net.to_params(net.delta(features, state))
        net.position[token] += 1.0
        after = net.to_params(net.delta(features, state))
    return {layer.name: sum(float((after[layer.name][k] - before[layer.name][k]).norm()) for k in before[layer.name])
            for layer in net.layers}


@pytest.mark.parametrize("token", range(len(LAYERS)))
def test_with_a_decoder_that_mixes_nothing_a_layers_token_moves_only_that_layers_delta(token):
    net = make_net(head_init_scale=1.0).eval()
    net.decoder = PassThrough()
    change = delta_change_per_layer(net, token)
    assert [name for name, moved in change.items() if moved > 0] == [LAYERS[token].name]


def silence_sublayers(decoder: nn.TransformerDecoder) -> None:
    """Zero what each attention and feed-forward block adds: the real decoder then keeps only its residual
    stream and final norm, both per token, so any mixing left would come from how tokens are laid out."""
    with torch.no_grad():
        for layer in decoder.layers:
            for module in (layer.self_attn.out_proj, layer.multihead_attn.out_proj, layer.linear2):
                module.weight.zero_()
                module.bias.zero_()


@pytest.mark.parametrize("token", range(len(LAYERS)))
def test_through_the_real_decoder_a_layers_token_moves_only_that_layers_delta_once_attention_adds_nothing(token):
    # With live attention every token mixes with the others, so only its silenced form gives an exact answer.
    net = make_net(head_init_scale=1.0).eval()
    silence_sublayers(net.decoder)
    change = delta_change_per_layer(net, token)
    assert [name for name, moved in change.items() if moved > 0] == [LAYERS[token].name]
