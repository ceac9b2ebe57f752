"""Rank-relaxed stack (HyperDreamBooth §4.3): frozen components plus one trainable component.

ΔW = Σ_i ΔW_i. Since every component has an exact LoRA form, so has the sum: its factors are
the concatenated factors, of rank Σ r_i. The typical stack is a hypernetwork-predicted LiDB
(frozen) plus a fresh LoRA of rank r > 1 (trained for ~40 steps).
"""

from __future__ import annotations

import numbers
import random
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor

from lowdim import functional as F
from lowdim.spaces.base import LayerSpec, Space, SpaceConfig, SpaceMaker, Tensors, require
from lowdim.spaces.lidb import LidbSpace
from lowdim.spaces.lora import LoraSpace


def _default_components() -> list[dict[str, Any]]:
    return [{"space": "lidb", "config": {}}, {"space": "lora", "config": {"rank": 4}}]


def _check_component(index: int, component: dict[str, Any]) -> None:
    """The types a component's entries must have: a file or a config dict carries them as written, and a wrong
    one would otherwise surface as a raw TypeError/ValueError when the stack is built or injected."""
    where = f"stack: component {index} ({component['space']!r})"
    config, seed = component.get("config"), component.get("seed")
    require(config is None or isinstance(config, dict), f"{where}: config must be a dict of options, got {config!r}")
    # bool is an int to Python, and int(1.5) would quietly seed with 1
    require(seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)),
            f"{where}: seed must be an integer or null, got {seed!r}")


@dataclass
class StackConfig(SpaceConfig):
    components: list[dict[str, Any]] = field(
        default_factory=_default_components,
        metadata={"help": "Components as [{'space': name, 'config': {...}, 'seed': optional int}, ...]."},
    )
    trainable: int = field(default=-1, metadata={"help": "Index of the one trainable component (-1: the last)."})
    # Read by relax_rank, which folds the frozen part into the base weights when it is set. A file
    # records it; loading a file never merges (the output is the same either way).
    merge_frozen: bool = field(
        default=False, metadata={"help": "Fold the frozen components into the base weights, as the paper does."}
    )

    def validate(self) -> None:
        require(isinstance(self.components, list) and len(self.components) >= 1,
                "stack: components must be a non-empty list")
        for i, component in enumerate(self.components):
            require(isinstance(component, dict) and "space" in component,
                    f"stack: component {i} must be a dict with a 'space' name, got {component!r}")
            _check_component(i, component)
        count = len(self.components)
        require(-count <= self.trainable < count,
                f"stack: trainable index {self.trainable} is out of range for {count} components")


class StackSpace(Space[StackConfig]):
    name = "stack"
    summary = "Sum of frozen spaces plus one trainable space; exports as one LoRA of summed rank (§4.3)."
    config_class = StackConfig

    def __init__(self, config: StackConfig | None = None, *, registry: SpaceMaker | None = None,
                 component_spaces: list[Space] | None = None, **overrides: Any) -> None:
        """``registry`` resolves the components' names (``registry.make_space`` passes itself); a stack
        built directly falls back to the process-wide one, as ``lowdim.get_space`` does.
        ``component_spaces``: the components already built, one per config entry."""
        super().__init__(config, **overrides)
        if component_spaces is None:
            if registry is None:
                from lowdim.registry import get_registry

                registry = get_registry()
            component_spaces = [
                registry.make_space(c["space"], c.get("config") or {}) for c in self.config.components
            ]
        names = [c["space"] for c in self.config.components]
        require([space.name for space in component_spaces] == names,
                f"stack: component spaces {[space.name for space in component_spaces]} do not match {names}")
        self.components: list[Space] = list(component_spaces)
        self.trainable_index = self.config.trainable % len(self.components)

    @classmethod
    def build(cls, config: SpaceConfig, registry: SpaceMaker) -> StackSpace:
        # cast: the registry makes ``config`` from config_class (a StackConfig); Space.__init__ refuses any other
        return cls(cast(StackConfig, config), registry=registry)

    @classmethod
    def of(cls, frozen: list[tuple[Space, int | None]], trainable: Space, merge_frozen: bool = False) -> StackSpace:
        """A stack of already-built spaces: (space, adapter seed or None) frozen, then the trainable one.

        The spaces are used as they are, so no registry needs to know them."""
        components = [
            {"space": space.name, "config": space.config.to_dict(), "seed": seed} for space, seed in frozen
        ]
        components.append({"space": trainable.name, "config": trainable.config.to_dict()})
        config = StackConfig(components=components, trainable=-1, merge_frozen=merge_frozen)
        return cls(config, component_spaces=[space for space, _ in frozen] + [trainable])

    def _prefixed(self, index: int, names: Any) -> list[str]:
        return [f"c{index}_{name}" for name in names]

    @staticmethod
    def _take(tensors: Tensors, index: int) -> Tensors:
        prefix = f"c{index}_"
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    @staticmethod
    def component_keys(index: int, tensors: Tensors) -> Tensors:
        """Component ``index``'s tensors under the names the stack gives them: its key layout is its own,
        so code that fills a component (``relax_rank``) never spells the prefix."""
        return {f"c{index}_{k}": v for k, v in tensors.items()}

    @classmethod
    def component_tensors(cls, tensors: Tensors, index: int) -> Tensors:
        """Component ``index``'s tensors out of the stack's, under the component's own names."""
        return cls._take(tensors, index)

    def param_shapes(self, layer: LayerSpec) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for i, space in enumerate(self.components):
            shapes.update({f"c{i}_{k}": v for k, v in space.param_shapes(layer).items()})
        return shapes

    def trainable_names(self, layer: LayerSpec) -> list[str]:
        space = self.components[self.trainable_index]
        return self._prefixed(self.trainable_index, space.trainable_names(layer))

    def init_params(self, layer: LayerSpec, generator: torch.Generator) -> Tensors:
        params: Tensors = {}
        for i, space in enumerate(self.components):
            params.update({f"c{i}_{k}": v for k, v in space.init_params(layer, generator).items()})
        return params

    def component_seed(self, index: int, layer: LayerSpec, seed: int) -> int:
        explicit = self.config.components[index].get("seed")
        if explicit is not None:
            return F.layer_seed(explicit, layer.name)
        # Component 0 keeps the adapter's own bases, so an adapter frozen into a stack is unchanged.
        return seed if index == 0 else F.layer_seed(seed, f"{layer.name}#c{index}")

    def make_buffers(self, layer: LayerSpec, seed: int) -> Tensors:
        buffers: Tensors = {}
        for i, space in enumerate(self.components):
            made = space.make_buffers(layer, self.component_seed(i, layer, seed))
            buffers.update({f"c{i}_{k}": v for k, v in made.items()})
        return buffers

    def component_factors(self, params: Tensors, buffers: Tensors) -> list[tuple[Tensor, Tensor]]:
        return [
            space.factors(self._take(params, i), self._take(buffers, i))
            for i, space in enumerate(self.components)
        ]

    def factors(self, params: Tensors, buffers: Tensors) -> tuple[Tensor, Tensor]:
        return F.concat_factors(self.component_factors(params, buffers))

    def delta(self, params: Tensors, buffers: Tensors) -> Tensor:
        first, *rest = (F.lowrank_delta(d, u) for d, u in self.component_factors(params, buffers))
        return sum(rest, first)

    def trainable_factors(self, params: Tensors, buffers: Tensors) -> tuple[Tensor, Tensor]:
        # Every forward of fast finetuning asks for this: the merged frozen part is not recomputed.
        index = self.trainable_index
        return self.components[index].factors(self._take(params, index), self._take(buffers, index))

    def split_factors(self, params: Tensors, buffers: Tensors
                      ) -> tuple[tuple[Tensor, Tensor] | None, tuple[Tensor, Tensor]]:
        factors = self.component_factors(params, buffers)
        trainable = factors.pop(self.trainable_index)
        return (F.concat_factors(factors) if factors else None), trainable

    def stacks_layers(self) -> bool:
        return all(space.stacks_layers() for space in self.components)  # concatenation keeps leading dims

    def rank(self, layer: LayerSpec) -> int:
        return sum(space.rank(layer) for space in self.components)

    def describe(self, layer: LayerSpec) -> str | None:
        notes = [note for space in self.components if (note := space.describe(layer))]
        return "; ".join(notes) or None

    @classmethod
    def sample_config(cls, rng: random.Random, layer: LayerSpec) -> StackConfig:
        components = []
        for _ in range(rng.randint(1, 3)):
            space_class = rng.choice([LoraSpace, LidbSpace])  # the built-in components, in any registry
            config = space_class.sample_config(rng, layer)
            components.append({"space": space_class.name, "config": config.to_dict()})
        return StackConfig(components=components, trainable=rng.randrange(len(components)))
