"""How a space's per-layer params map to weight tokens and back.

Every target layer owns one token. Its current estimate θ (the layer's trainable params,
flattened and concatenated in ``trainable_names`` order) lives in a *state*: one tensor
(B, layers in group, numel) per group. A group is either one layer, or all layers whose
trainable params have identical names and shapes; a group shares one linear map, so an SD
UNet's many same-shaped LiDB layers cost one embedding and one head, not hundreds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lowdim.errors import LowdimError
from lowdim.spaces.base import LayerSpec, Space

State = list[Tensor]  # one (B, n_g, numel_g) tensor per group
LayerTensors = dict[str, dict[str, Tensor]]


@dataclass(frozen=True)
class ParamLayout:
    """The trainable params of one layer: names and shapes, in a fixed order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def sizes(self) -> list[int]:
        return [int(torch.Size(shape).numel()) for shape in self.shapes]

    @property
    def numel(self) -> int:
        return sum(self.sizes)


def param_layout(space: Space, layer: LayerSpec) -> ParamLayout:
    """The layer's params, all of which must be trainable: frozen ones cannot be predicted."""
    shapes = space.param_shapes(layer)
    trainable = space.trainable_names(layer)
    frozen = [name for name in shapes if name not in trainable]
    if frozen:
        raise LowdimError(
            f"space '{space.name}' has frozen params ({', '.join(frozen)}) on layer {layer.name}; the "
            f"hypernetwork predicts only spaces whose params are all trainable (e.g. lidb, lora)"
        )
    return ParamLayout(tuple(shapes), tuple(tuple(shapes[name]) for name in shapes))


@dataclass(frozen=True)
class Grouping:
    """Layers split into groups; ``slot[i]`` = (group, position in group) of layer i."""

    layouts: tuple[ParamLayout, ...]
    members: tuple[tuple[int, ...], ...]

    @classmethod
    def build(cls, layouts: Sequence[ParamLayout], mode: str) -> Grouping:
        keyed: dict[object, list[int]] = {}
        for index, layout in enumerate(layouts):
            keyed.setdefault(layout if mode == "shape" else index, []).append(index)
        return cls(tuple(layouts[m[0]] for m in keyed.values()), tuple(tuple(m) for m in keyed.values()))

    @property
    def order(self) -> list[int]:
        """Layer indices in group-concatenated order."""
        return [index for members in self.members for index in members]


class TokenEmbedding(nn.Module):
    """θ_{k-1} per layer -> one token per layer (B, L, width), in layer order."""

    inverse: Tensor  # a buffer

    def __init__(self, grouping: Grouping, width: int) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(layout.numel, width) for layout in grouping.layouts)
        # Index that turns group-concatenated order back into layer order.
        inverse = torch.argsort(torch.tensor(grouping.order))
        self.register_buffer("inverse", inverse, persistent=False)

    def forward(self, state: State) -> Tensor:
        tokens = torch.cat([linear(theta) for linear, theta in zip(self.linears, state, strict=True)], dim=1)
        return tokens.index_select(1, self.inverse)


class OutputHeads(nn.Module):
    """Decoder tokens (B, L, width) -> Δθ per group, initialised small so θ_1 ≈ 0."""

    def __init__(self, grouping: Grouping, width: int, init_scale: float) -> None:
        super().__init__()
        linears = [nn.Linear(width, layout.numel) for layout in grouping.layouts]
        with torch.no_grad():
            for linear in linears:
                linear.weight.mul_(init_scale)
                linear.bias.zero_()
        self.linears = nn.ModuleList(linears)
        for index, members in enumerate(grouping.members):
            self.register_buffer(f"members{index}", torch.tensor(members), persistent=False)

    def forward(self, tokens: Tensor) -> State:
        return [
            linear(tokens.index_select(1, getattr(self, f"members{index}")))
            for index, linear in enumerate(self.linears)
        ]


def zero_state(grouping: Grouping, batch: int, like: Tensor) -> State:
    """θ_0 = 0 (eq. 3)."""
    return [like.new_zeros(batch, len(members), layout.numel)
            for layout, members in zip(grouping.layouts, grouping.members, strict=True)]


def state_to_params(grouping: Grouping, layers: Sequence[LayerSpec], state: State) -> LayerTensors:
    """The state as ``{layer: {param: (B, *shape)}}``, in layer order: what Adapters.override takes."""
    result: dict[int, dict[str, Tensor]] = {}
    for layout, members, theta in zip(grouping.layouts, grouping.members, state, strict=True):
        for position, index in enumerate(members):
            chunks = theta[:, position].split(layout.sizes, dim=-1)
            result[index] = {
                name: chunk.reshape(theta.shape[0], *shape)
                for name, shape, chunk in zip(layout.names, layout.shapes, chunks, strict=True)
            }
    return {layer.name: result[index] for index, layer in enumerate(layers)}


def params_to_state(grouping: Grouping, layers: Sequence[LayerSpec], params: LayerTensors) -> State:
    """Inverse of state_to_params; every tensor needs the leading batch dimension."""
    state = []
    for layout, members in zip(grouping.layouts, grouping.members, strict=True):
        rows = []
        for index in members:
            tensors = params[layers[index].name]
            rows.append(torch.cat([tensors[name].flatten(1) for name in layout.names], dim=-1))
        state.append(torch.stack(rows, dim=1))
    return state
