"""Choosing target layers: named layer sets made of name patterns and a layer-type filter."""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lowdim.errors import LowdimError
from lowdim.injection.matching import (  # re-exported: lowdim_sd (preview, draw_parts, textual_inversion) imports them
    EMBEDDING,
    LAYER_TYPES,
    compiled_pattern,
    layer_kind,
    literal_name,
    matches,
)
from lowdim.injection.select_words import no_match_message
from lowdim.option_words import counted

if TYPE_CHECKING:  # torch loads with the first model: plugins name LayerSets at import, `lowdim --help` loads them
    from types import FrameType

    from torch import nn

    from lowdim.injection.slot_types import BaseLayer


@dataclass(frozen=True)
class LayerSet:
    """Layers of the kinds ``types`` names whose dotted names match any ``include`` pattern and no ``exclude`` one.

    Patterns are shell globs over the full dotted name (``*`` crosses dots), or regular
    expressions when prefixed with ``re:`` (matched against the full name). ``types`` takes
    ``"linear"`` (nn.Linear), ``"conv1x1"`` (a 1x1 nn.Conv2d, stride 1, no padding, one group) and
    ``"embedding"`` (nn.Embedding); it defaults to ``("linear",)``, where patterns given to ``inject``
    as a string or list take ``("linear", "conv1x1")``. A wildcard that meets 1x1 convolutions the
    types leave out warns; embeddings are taken only when ``types`` names them.
    """

    name: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    types: tuple[str, ...] = ("linear",)
    description: str = ""
    # Made by from_patterns from what the user typed, not a LayerSet given: errors then speak of the patterns.
    plain_patterns: bool = field(default=False, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.types if kind not in (*LAYER_TYPES, EMBEDDING)]
        if unknown:
            raise LowdimError(f"layer set '{self.name}': unknown layer type '{unknown[0]}'; known: "
                              f"{', '.join((*LAYER_TYPES, EMBEDDING))}")

    @classmethod
    def from_patterns(cls, patterns: str | Sequence[str], name: str | None = None) -> LayerSet:
        if isinstance(patterns, str):
            patterns = split_patterns(patterns)
        return cls(name=name or ",".join(patterns), include=tuple(patterns), types=LAYER_TYPES, plain_patterns=True)


def split_patterns(text: str) -> list[str]:
    """'*.to_q, *.to_k' -> two patterns; a comma inside brackets, braces or parentheses belongs to its regex
    ('re:1[0-9]{0,1}' stays whole)."""
    patterns: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += (char in "([{") - (char in ")]}")
        if char == "," and depth <= 0:
            patterns.append("".join(current))
            current = []
        else:
            current.append(char)
    patterns.append("".join(current))
    return [pattern.strip() for pattern in patterns if pattern.strip()]


def covers(outer: LayerSet, inner: LayerSet) -> bool:
    """Whether every layer ``inner`` selects, in any model, is one ``outer`` selects too.

    Decided from the patterns alone (no model needed), so it is conservative: True when inner's
    include patterns and layer types are among outer's and outer excludes nothing inner keeps.
    An adapter made for ``outer`` can then be cut down to ``inner`` layer by layer.
    """
    return (set(inner.include) <= set(outer.include) and set(outer.exclude) <= set(inner.exclude)
            and set(inner.types) <= set(outer.types))


# The input token embedding under the names CLIP, LLaMA-style and GPT-2-style models give it: where a
# token space (Textual Inversion) goes when no layers are named.
TOKEN_EMBEDDINGS = LayerSet("token-embedding", ("re:.*(token_embedding|embed_tokens|wte)",), types=(EMBEDDING,),
                            description="the text encoder's input token embedding (Textual Inversion)")


def candidate_layers(model: nn.Module, types: Iterable[str] = LAYER_TYPES) -> list[tuple[str, BaseLayer]]:
    """(name, layer) of each adaptable layer in model order; a wrapped one's own layer, under the wrapper's name."""
    from lowdim.injection.slot_types import BaseLayer

    wanted = set(types)
    found = []
    # nn.MultiheadAttention never calls out_proj, it reads out_proj.weight. A wrapper would hand it the
    # effective weight (AdapterLayer.weight), right for one shared adapter, but per-sample adapters
    # cannot be one weight, so out_proj stays out of the candidates.
    opaque = _opaque_layers(model)
    for name, module in model.named_modules():
        if name in opaque:
            continue
        if getattr(module, "is_lowdim_wrapper", False):
            module = module.base_layer
        if not name or name.endswith(".base_layer"):
            continue  # the root module cannot be swapped in place; wrappers' inner layers are not targets
        if isinstance(module, BaseLayer) and layer_kind(module) in wanted:  # layer_kind names only these
            found.append((name, module))
    return found


def _opaque_layers(model: nn.Module) -> set[str]:
    from torch import nn

    return {f"{name}.out_proj" if name else "out_proj"
            for name, module in model.named_modules() if isinstance(module, nn.MultiheadAttention)}


def select_layers(model: nn.Module, layer_set: LayerSet) -> list[tuple[str, BaseLayer]]:
    """Matching (name, module) pairs in model order; a pattern that matches nothing is an error."""
    from torch import nn

    candidates = candidate_layers(model, layer_set.types)
    names = [name for name, _ in candidates]
    known = set(names)
    for pattern in layer_set.include:
        literal = literal_name(pattern)  # an exact name (relax_rank's layer sets: 176 of them) is a set lookup
        found = literal in known if literal is not None else any(map(compiled_pattern(pattern).fullmatch, names))
        if not found:
            opaque = sorted(name for name in _opaque_layers(model) if matches(pattern, name))
            if opaque:
                what = (f"only {opaque[0]}, the out_proj of an nn.MultiheadAttention, which reads that weight "
                        f"directly: it cannot" if len(opaque) == 1 else
                        f"only the out_proj of {len(opaque)} nn.MultiheadAttention layers ({opaque[0]}, ...), which "
                        f"read those weights directly: they cannot")
                raise LowdimError(f"pattern '{pattern}' matches {what} carry adapters")
            raise LowdimError(no_match_message(pattern, layer_set, names, model))
    include, exclude = _any_of(layer_set.include), _any_of(layer_set.exclude)
    chosen = [(name, module) for name, module in candidates if include(name) and not exclude(name)]
    _warn_skipped_layers(model, layer_set, chosen, lambda name: include(name) and not exclude(name))
    for name, module in chosen:
        if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
            raise LowdimError(f"layer '{name}' is an nn.{type(module).__name__} whose shape is not known yet; "
                              f"run one forward pass through the model before adding adapters")
    return chosen


def _warn_skipped_layers(model: nn.Module, layer_set: LayerSet, chosen: list[tuple[str, BaseLayer]],
                         selects: Callable[[str], bool]) -> None:
    """A pattern that meets layers lowdim cannot adapt beside ones it can (``*`` on GPT2LMHeadModel: the Conv1Ds and
    lm_head; on an nn.TransformerEncoder: the attention and the FFN) adapts the ones it can; the layers the user most
    likely meant are skipped, so that is said, once per kind."""
    from torch import nn  # at call time, as the rest of this module imports torch

    if not chosen:
        return
    conv1ds, attention, convolutions, typed_out = [], [], [], []
    taken = {name for name, _ in chosen}
    types_take_convs = "conv1x1" in layer_set.types
    for name, module in model.named_modules():
        if type(module).__name__ == "Conv1D" and selects(name):  # the type first: a cheap pass on any model
            conv1ds.append(name)
        elif isinstance(module, nn.modules.conv._ConvNd) and layer_kind(module) is None and name not in taken \
                and selects(name):
            convolutions.append(f"{name} ({_conv_shape(module)})")
        elif not types_take_convs and _is_conv1x1(module) and not name.endswith(".base_layer") and selects(name):
            typed_out.append(name)  # LayerSet's default types leave these out; a pattern list takes them
        # out_proj is an nn.Linear a pattern such as '*' meets; the attention is skipped whichever part it names.
        elif isinstance(module, nn.MultiheadAttention) and (selects(name) or selects(f"{name}.out_proj")):
            attention.append(name)
    get = "gets" if len(chosen) == 1 else "get"
    adapted = f"only {counted(len(chosen), 'layer')} {get} the adapter, e.g. {chosen[0][0]}"
    if conv1ds:
        warnings.warn(f"targets '{layer_set.name}' also match {len(conv1ds)} transformers Conv1D layers (e.g. "
                      f"{conv1ds[0]}), which lowdim does not adapt (GPT-2's transposed linear layers): {adapted}",
                      stacklevel=user_stacklevel())
    if convolutions:
        warnings.warn(f"targets '{layer_set.name}' also match {counted(len(convolutions), 'convolution')} (e.g. "
                      f"{convolutions[0]}), which lowdim does not adapt (only a 1x1 nn.Conv2d with stride 1, no "
                      f"padding and one group is linear per pixel): {adapted}", stacklevel=user_stacklevel())
    if typed_out:
        warnings.warn(f"targets '{layer_set.name}' also match {counted(len(typed_out), '1x1 convolution')} (e.g. "
                      f"{typed_out[0]}), which this layer set's types ({', '.join(layer_set.types)}) leave out: add "
                      f"'conv1x1' to its types to adapt them too: {adapted}", stacklevel=user_stacklevel())
    if attention:
        also = counted(len(attention), "nn.MultiheadAttention layer")
        warnings.warn(f"targets '{layer_set.name}' also match {also} (e.g. "
                      f"{attention[0]}), which cannot carry adapters (they compute q, k and v from a bare "
                      f"in_proj_weight and read out_proj.weight directly): {adapted}", stacklevel=user_stacklevel())


def _is_conv1x1(module: nn.Module) -> bool:
    """Whether ``module``, or the layer inside lowdim's wrapper, is a 1x1 convolution lowdim can adapt."""
    inner = module.get_submodule("base_layer") if getattr(module, "is_lowdim_wrapper", False) else module
    return layer_kind(inner) == "conv1x1"


def _conv_shape(conv: nn.modules.conv._ConvNd) -> str:
    """'3x3 nn.Conv2d', 'nn.Conv1d', '1x1 nn.Conv2d with stride 2': what keeps a convolution from carrying one."""
    kernel = "x".join(map(str, conv.kernel_size))
    odd = [f"{what} {getattr(conv, what)}" for what in ("stride", "padding", "groups")
           if getattr(conv, what) not in ((1, 1), (0, 0), 1, "valid")]
    return f"{kernel} nn.{type(conv).__name__}" + (f" with {', '.join(odd)}" if odd else "")


def user_stacklevel(*also: str) -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside lowdim (and the folders ``also``
    names, torch's for a warning from a forward), however deep inside lowdim the caller of this function is
    (``Adapters.add`` directly, or through ``inject`` and a decorator)."""
    skipped = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep, *also)
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(skipped):
        frame, level = frame.f_back, level + 1
    return level


def _any_of(patterns: Sequence[str]) -> Callable[[str], bool]:
    """Whether a name matches any of the patterns, each compiled once; plain names are one set lookup."""
    literals = [literal_name(pattern) for pattern in patterns]
    if all(literal is not None for literal in literals):
        return set(literals).__contains__
    compiled = [compiled_pattern(pattern) for pattern in patterns]
    return lambda name: any(expression.fullmatch(name) for expression in compiled)


def exact_layers(name: str, layer_names: Sequence[str]) -> LayerSet:
    """A layer set of exactly these modules (names are matched literally, not as globs), embeddings included."""
    return LayerSet(name=name, include=tuple("re:" + re.escape(n) for n in layer_names),
                    types=(*LAYER_TYPES, EMBEDDING))
