"""The contract every weight space fulfils, whether built in or added by a plugin.

A space is pure math: it knows how to create the tensors of one adapted layer and how to turn
them into LoRA factors (down, up). Everything that runs is built from those factors: the wrapped
layer's forward (``functional.lowrank_add_``), merging into the weights, the dense delta and
export. So a space cannot make its forward disagree with what it merges or exports; the contract
suite checks the factors against each space's own formula for ΔW instead.
It holds no tensors itself; the injection layer (``lowdim.injection``) owns those.

Two kinds of per-layer tensors exist:

* *params*: what an adapter file stores (trainable ones and, for stacks, frozen components);
* *buffers*: frozen state a space can regenerate from a seed (LiDB's random bases), so files
  need not store it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import random
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import torch
from torch import Tensor

from lowdim import functional as F
from lowdim.errors import ConfigError, LowdimError

Tensors = dict[str, Tensor]
_Config = TypeVar("_Config", bound="SpaceConfig")
if TYPE_CHECKING:
    # The default (PEP 696) makes a bare ``Space`` mean ``Space[SpaceConfig]``. typing has it from 3.13 only and
    # typing_extensions is not a run-time dependency on 3.11+, so only the checkers (which ship its stubs) see it.
    from typing_extensions import TypeVar as _TypeVarWithDefault

    ConfigT = _TypeVarWithDefault("ConfigT", bound="SpaceConfig", covariant=True, default="SpaceConfig")
else:
    ConfigT = TypeVar("ConfigT", bound="SpaceConfig", covariant=True)


@dataclass(frozen=True)
class LayerSpec:
    """One target layer: its dotted module name and the (out, in) shape of its weight."""

    name: str
    out_features: int
    in_features: int


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A config field that carries its own help text (shown by ``lowdim spaces --verbose``)."""
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class SpaceConfig:
    """Base of every space config. Subclasses add fields made with ``option``."""

    def validate(self) -> None:
        """Raise ConfigError naming the bad value. Called once when a space is built."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[_Config], values: Mapping[str, Any], space_name: str = "") -> _Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            owner = f"space '{space_name}'" if space_name else cls.__name__
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for {owner}; "
                f"known: {', '.join(sorted(known))}"
            )
        prefix = f"{space_name}: " if space_name else ""
        config = cls(**{name: _checked_type(cls, name, value, prefix) for name, value in values.items()})
        config.validate()
        return config

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def _checked_type(config_class: type, name: str, value: Any, prefix: str = "") -> Any:
    """``value`` as the option's declared scalar type (int, float, bool, str, optionally None), or ConfigError.

    Options arrive from JSON, the command line and numpy; a string where a number belongs would
    otherwise surface as a TypeError deep inside ``validate``.
    """
    declared = typing.get_type_hints(config_class).get(name, Any)
    union = typing.get_origin(declared) in (typing.Union, types.UnionType)  # float | None, Optional[float]
    parts = set(typing.get_args(declared)) if union else {declared}
    optional = type(None) in parts
    if value is None and optional:
        return None
    kinds = [kind for kind in (bool, int, float, str) if kind in parts]
    if not kinds:  # lists, dicts, Any: the config's own validate() checks them
        return value
    if bool in kinds and isinstance(value, bool):
        return value
    if int in kinds and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if int in kinds and float not in kinds and isinstance(value, float) and value.is_integer():
        return int(value)  # 100.0 from a JSON or YAML file
    if float in kinds and isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{prefix}option {name} must be a finite number, got {value!r}")
        return float(value)
    if str in kinds and isinstance(value, str):
        return value
    wanted = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    expected = " or ".join(wanted[kind] for kind in kinds) + (" or null" if optional else "")
    raise ConfigError(f"{prefix}option {name} must be {expected}, got {value!r}")


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``condition``: the one-line check a config's ``validate`` is made of."""
    if not condition:
        raise ConfigError(message)


class Space(ABC, Generic[ConfigT]):
    """A low-dimensional parameterisation of a linear layer's weight update ΔW.

    Generic over its config: ``class MySpace(Space[MyConfig])`` makes ``self.config`` a ``MyConfig`` for type
    checkers and checks that ``config_class`` is ``MyConfig`` (or a subclass). A bare ``Space`` is any space.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    # A ClassVar holding the type variable, which the typing spec now allows (mypy 2.4, pyright 1.1.414 accept it);
    # mypy 1.x calls it an error [misc], hence the ignore, and still checks each space's assignment against it. As
    # a plain instance variable, pyright would call every read through a `type[Space]` (the registry's) ambiguous.
    config_class: ClassVar[type[ConfigT]]  # type: ignore[misc, unused-ignore]
    config: ConfigT
    # The rate a training run starts this space at when given none (`lowdim train` without --lr); None: the
    # backend's choice (the SD backend's is LoRA's 1e-4 for a space it has no rate of its own for).
    learning_rate: ClassVar[float | None] = None

    def __init__(self, config: SpaceConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = self.config_class.from_dict(overrides, self.name)
        elif overrides:
            config = self.config_class.from_dict({**config.to_dict(), **overrides}, self.name)
        elif not isinstance(config, self.config_class):
            raise ConfigError(f"space '{self.name}' expects a {self.config_class.__name__}")
        config.validate()
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    # -- what every space must define -------------------------------------------------------
    @abstractmethod
    def param_shapes(self, layer: LayerSpec) -> dict[str, tuple[int, ...]]:
        """Shapes of the stored tensors of one layer, in a fixed order."""

    @abstractmethod
    def init_params(self, layer: LayerSpec, generator: torch.Generator) -> Tensors:
        """Fresh float32 params for one layer. The default config must give ΔW = 0."""

    @abstractmethod
    def factors(self, params: Tensors, buffers: Tensors) -> tuple[Tensor, Tensor]:
        """Exact LoRA form (down (..., r, in), up (..., out, r)), scaling included."""

    # -- optional hooks with sensible defaults ---------------------------------------------
    def trainable_names(self, layer: LayerSpec) -> list[str]:
        """Which params an optimiser updates. Stacks freeze some of theirs."""
        return list(self.param_shapes(layer))

    def make_buffers(self, layer: LayerSpec, seed: int) -> Tensors:
        """Frozen state regenerated from the layer's seed; float64 on CPU, cast by the caller."""
        return {}

    def rank(self, layer: LayerSpec) -> int:
        """An upper bound on rank(ΔW): the width of the LoRA factors."""
        down_shape = self._factor_shapes(layer)[0]
        return down_shape[0]

    def delta(self, params: Tensors, buffers: Tensors) -> Tensor:
        down, up = self.factors(params, buffers)
        return F.lowrank_delta(down, up)

    def split_factors(
        self, params: Tensors, buffers: Tensors
    ) -> tuple[tuple[Tensor, Tensor] | None, tuple[Tensor, Tensor]]:
        """(frozen part, trainable part) of the update; a stack can merge the frozen one."""
        return None, self.factors(params, buffers)

    def trainable_factors(self, params: Tensors, buffers: Tensors) -> tuple[Tensor, Tensor]:
        """``split_factors(...)[1]``, what a forward adds once the frozen part is merged, computed alone."""
        return self.split_factors(params, buffers)[1]

    def stacks_layers(self) -> bool:
        """Whether ``factors`` and ``trainable_factors`` also take every param and buffer of several layers
        of one shape stacked over a new leading dimension, and give their factors stacked the same way.

        If so, a training forward makes the factors of all such layers in one batched product instead of
        one per layer (``lowdim.stacked_factors``). The contract suite checks the claim.
        """
        return False

    def num_params(self, layer: LayerSpec) -> int:
        shapes = self.param_shapes(layer)
        return sum(_numel(shapes[name]) for name in self.trainable_names(layer))

    def describe(self, layer: LayerSpec) -> str | None:
        """A note about this layer (a clamped dimension, say), or None."""
        return None

    @classmethod
    def sample_config(cls, rng: random.Random, layer: LayerSpec) -> ConfigT:
        """A random valid config for ``layer``; the shared contract tests draw from it."""
        return cls.config_class()

    @classmethod
    def build(cls, config: SpaceConfig, registry: SpaceMaker) -> Space:
        """The space for ``config``, as ``registry.make_space`` builds it.

        A space made of other spaces (the stack) overrides this to build its parts from the same
        registry, so a registry built apart from the process-wide one (a test's, an embedder's)
        resolves its own plugins' spaces.
        """
        return cls(config)

    # -- helpers ---------------------------------------------------------------------------
    def _factor_shapes(self, layer: LayerSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
        params = {k: torch.zeros(s, device="meta") for k, s in self.param_shapes(layer).items()}
        buffers = {k: v.to("meta") for k, v in self.make_buffers(layer, 0).items()}
        try:
            factors = self.factors(params, buffers)
        except (RuntimeError, NotImplementedError, TypeError) as error:
            # torch's own message ("Tensor.item() cannot be called on meta tensors", or for a boolean mask one that
            # does not say "meta") names neither the space nor why lowdim used the meta device at all.
            torch_says = str(error).splitlines()[0] if str(error) else ""
            raise LowdimError(
                f"space '{self.name}' on layer {layer.name} ({layer.out_features}x{layer.in_features}): factors "
                f"cannot run on meta-device tensors (lowdim calls it there to learn the shapes): use torch operations "
                f"only, no .item()/float()/numpy or indexing by value ({type(error).__name__}: {torch_says}) (a bug "
                f"in the space's code, not in the model or the options)") from error
        down, up = factors
        return tuple(down.shape), tuple(up.shape)


class SpaceMaker(Protocol):
    """What builds spaces by name: ``lowdim.Registry`` (named here, not imported: it imports this module)."""

    def make_space(self, name: str, config: dict[str, Any] | SpaceConfig | None = None) -> Space: ...


def _numel(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total
