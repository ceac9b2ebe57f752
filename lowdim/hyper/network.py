"""The HyperDreamBooth hypernetwork (§4.2, Fig. 4): image encoder + transformer decoder over weight tokens.

    f   = P(E(x))                                  image tokens, encoded once
    t_k = Embed(θ_{k-1}) + pos                     one token per target layer
    Δ_k = Heads(Decoder(queries=t_k, memory=f))    per-layer linear heads
    θ_k = θ_{k-1} + Δ_k,  θ_0 = 0,  k = 1..s       (eq. 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, cast, overload

import torch
from torch import Tensor, nn

from lowdim.errors import LowdimError
from lowdim.hyper.config import HyperConfig
from lowdim.hyper.encoder import ImageEncoder, given_images
from lowdim.hyper.head import HyperHead
from lowdim.hyper.layout import (
    Grouping,
    LayerTensors,
    OutputHeads,
    State,
    TokenEmbedding,
    param_layout,
    params_to_state,
    state_to_params,
    zero_state,
)
from lowdim.spaces.base import LayerSpec, Space

if TYPE_CHECKING:
    from lowdim.registry import Registry


class HyperNetwork(HyperHead):
    """Predicts one adapter per image: ``{layer: {param: (B, *shape)}}`` in ``space``."""

    def __init__(self, config: HyperConfig, space: Space | str, layers: Sequence[LayerSpec]) -> None:
        super().__init__()
        config.validate()
        if isinstance(space, str):  # a registered space's name with its default config, e.g. "lidb"
            from lowdim.registry import get_space

            space = get_space(space)
        if not layers:
            raise LowdimError("a hypernetwork needs at least one target layer")
        self.config = config
        self.space = space
        self.layers = list(layers)
        layouts = [param_layout(space, layer) for layer in self.layers]
        self.token_groups = Grouping.build(layouts, config.token_grouping)
        self.head_groups = Grouping.build(layouts, config.head_grouping)
        self.encoder = ImageEncoder(config.encoder, config.encoder_config, config.width, frozen=config.freeze_encoder,
                                    input_size=config.encoder_input_size, normalize=config.encoder_normalize,
                                    pool=config.encoder_pool)
        self.embed = TokenEmbedding(self.token_groups, config.width)
        # Learned positional embedding: tells same-shaped layers apart, as words in a sentence.
        self.position = nn.Parameter(torch.randn(len(self.layers), config.width) * 0.02)
        self.decoder = self._make_decoder(config)
        self.heads = OutputHeads(self.head_groups, config.width, config.head_init_scale)
        if config.standardize:  # θ = mean + std ⊙ z per group; identity until set_target_statistics
            for index, (layout, members) in enumerate(zip(self.head_groups.layouts, self.head_groups.members,
                                                          strict=True)):
                self.register_buffer(f"target_mean{index}", torch.zeros(len(members), layout.numel))
                self.register_buffer(f"target_std{index}", torch.ones(len(members), layout.numel))
        self.metadata = {}  # filled by load_hypernet

    @staticmethod
    def _make_decoder(config: HyperConfig) -> nn.TransformerDecoder:
        layer = nn.TransformerDecoderLayer(
            d_model=config.width,
            nhead=config.attention_heads,
            dim_feedforward=config.feedforward or 4 * config.width,
            dropout=config.dropout,
            batch_first=True,
            norm_first=True,
        )
        # Pre-norm layers leave the residual stream unnormalised: a final norm feeds the heads.
        return nn.TransformerDecoder(layer, config.decoder_layers, norm=nn.LayerNorm(config.width))

    # -- the pieces of eq. 3 ------------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        """Image features f (B, T, width); computed once per forward, reused by every iteration."""
        return self.encoder(images)

    def delta(self, features: Tensor, state: State) -> State:
        """Δ(f, θ_{k-1}): one refinement step, in the grouped layout of the heads."""
        tokens = self.embed(self._regroup(state, self.head_groups, self.token_groups)) + self.position
        return self.heads(self.decoder(tokens, features))

    def _regroup(self, state: State, source: Grouping, target: Grouping) -> State:
        if source == target:
            return state
        return params_to_state(target, self.layers, state_to_params(source, self.layers, state))

    def zero_state(self, features: Tensor) -> State:
        return zero_state(self.head_groups, features.shape[0], features)

    # -- standardized targets -----------------------------------------------------------------
    def _statistics(self) -> list[tuple[Tensor, Tensor]] | None:
        if not self.config.standardize:
            return None
        return [(getattr(self, f"target_mean{i}"), getattr(self, f"target_std{i}"))
                for i in range(len(self.head_groups.layouts))]

    @torch.no_grad()
    def set_target_statistics(self, targets: LayerTensors, min_std: float = 1e-8) -> None:
        """Fit the per-coordinate mean and spread of training targets ({layer: {param: (N, *shape)}})."""
        if not self.config.standardize:
            raise LowdimError("set_target_statistics needs a network built with standardize=True")
        for index, theta in enumerate(params_to_state(self.head_groups, self.layers, targets)):
            theta = theta.double()
            getattr(self, f"target_mean{index}").copy_(theta.mean(0))
            # A floor relative to the group's typical spread: near-constant coordinates must not blow up z.
            std = theta.std(0, unbiased=False) if theta.shape[0] > 1 else torch.ones_like(theta[0])
            floor = max(float(std.mean()) * 1e-2, min_std)
            getattr(self, f"target_std{index}").copy_(std.clamp_min(floor))

    def standardized(self, params: LayerTensors) -> State:
        """Params (θ) -> the network's coordinates z (θ itself without standardize)."""
        state = params_to_state(self.head_groups, self.layers, params)
        stats = self._statistics()
        if stats is None:
            return state
        return [(theta - mean) / std for theta, (mean, std) in zip(state, stats, strict=True)]

    # -- public API ---------------------------------------------------------------------------
    @overload
    def forward(self, images: Tensor | None, iterations: int | None = None, *, return_all: Literal[False] = False,
                init: LayerTensors | None = None, features: Tensor | None = None) -> LayerTensors: ...

    @overload
    def forward(self, images: Tensor | None, iterations: int | None = None, *, return_all: Literal[True],
                init: LayerTensors | None = None, features: Tensor | None = None) -> list[LayerTensors]: ...

    @overload
    def forward(self, images: Tensor | None, iterations: int | None = None, *, return_all: bool,
                init: LayerTensors | None = None, features: Tensor | None = None) -> LayerTensors | list[LayerTensors]:
        ...

    def forward(
        self,
        images: Tensor | None,
        iterations: int | None = None,
        *,
        return_all: bool = False,
        init: LayerTensors | None = None,
        features: Tensor | None = None,
    ) -> LayerTensors | list[LayerTensors]:
        """θ_s (or [θ_1, ..., θ_s] with return_all) for a batch of images (B, C, H, W) in [-1, 1].

        ``init`` replaces θ_0 = 0 with given params (each (B, *shape)), e.g. to keep refining.
        ``features``: the encoder backbone's output for the images, when already computed (a frozen
        backbone's features can be cached); ``images`` is then ignored.
        """
        states = self.iterate(images, iterations, init=init, features=features)
        params = [self.to_params(state) for state in states]
        return params if return_all else params[-1]

    def iterate(
        self, images: Tensor | None, iterations: int | None = None, *, init: LayerTensors | None = None,
        features: Tensor | None = None,
    ) -> list[State]:
        """[z_1, ..., z_s] in the grouped layout (cheaper than dicts when only a loss is needed); z is θ
        itself unless the network standardizes (see ``standardized``)."""
        steps = self.config.iterations if iterations is None else iterations
        if steps < 1:
            raise LowdimError(f"iterations must be >= 1, got {steps}")
        features = self.encode(given_images(images)) if features is None else self.encoder.project(features)
        # θ_0 = 0, or the targets' mean when standardized (z = 0).
        state = self.zero_state(features) if init is None else self.from_params(init)
        states = []
        for _ in range(steps):
            previous = [theta.detach() for theta in state] if self.config.detach_iterates else state
            state = [theta + step for theta, step in zip(state, self.delta(features, previous), strict=True)]
            states.append(state)
        return states

    def to_params(self, state: State) -> LayerTensors:
        stats = self._statistics()
        if stats is not None:
            state = [mean + std * z for z, (mean, std) in zip(state, stats, strict=True)]
        return state_to_params(self.head_groups, self.layers, state)

    def from_params(self, params: LayerTensors) -> State:
        return self.standardized(params)

    def num_predicted(self) -> int:
        """Numbers predicted per image (the adapter's size)."""
        return sum(self.space.num_params(layer) for layer in self.layers)


def weight_loss(predicted: LayerTensors, target: LayerTensors) -> Tensor:
    """||θ̂ − θ||² of eq. 2: summed over all params, averaged over the batch."""
    total = None
    for layer, params in target.items():
        for name, value in params.items():
            error = (predicted[layer][name] - value).pow(2).flatten(1).sum(1)
            total = error if total is None else total + error
    if total is None:
        raise LowdimError("weight_loss: the target holds no tensors")
    return total.mean()


def build_transformer(config: HyperConfig, space: Space, layers: Sequence[LayerSpec]) -> HyperNetwork:
    """Factory of the built-in 'transformer' head (registered through register_heads)."""
    return HyperNetwork(config, space, layers)


def build_hypernet(
    config: HyperConfig, space: Space, layers: Sequence[LayerSpec], registry: Registry | None = None
) -> HyperHead:
    """Build the architecture that ``config.architecture`` names, from whichever plugin registered it."""
    from lowdim.registry import get_registry

    registry = registry or get_registry()
    if config.architecture not in registry.heads:
        known = ", ".join(sorted(registry.heads)) or "none"
        raise LowdimError(f"unknown hypernetwork head '{config.architecture}'; known: {known}")
    # A plugin's head is any nn.Module with HyperHead's attributes and call (docs/hypernetwork.md).
    return cast(HyperHead, registry.heads[config.architecture].value(config, space, layers))
