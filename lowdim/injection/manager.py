"""Adapters on any torch model: add, scale, enable, merge, per-sample batches, remove.

State lives on the model itself (the wrapper modules plus one attribute), so an ``Adapters``
object is a cheap view: ``Adapters(model)`` anywhere sees the same adapters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import torch
from torch import Tensor, nn

from lowdim.errors import LowdimError
from lowdim.injection import adding, merging
from lowdim.injection.adapter_info import AdapterInfo  # also re-exported: lowdim/injection/__init__.py names it here
from lowdim.injection.adapter_words import adapters_repr, scale_words
from lowdim.injection.guards import check_override, check_scale, refuse_if_merged
from lowdim.injection.inference import makes_normal_tensors
from lowdim.injection.layer import AdapterLayer, AdapterSlot
from lowdim.injection.load_checks import check_loadable
from lowdim.injection.matching import matches
from lowdim.injection.parallel import inner_model
from lowdim.injection.peft_names import refusing_peft_keywords
from lowdim.injection.select import LayerSet, split_patterns
from lowdim.injection.state_guard import unguard_loads
from lowdim.injection.wrapping import module_holders, unwrap
from lowdim.spaces.base import Space

STATE_ATTR = "_lowdim_adapters"
DEFAULT_NAME = "default"  # what ``inject`` names an adapter, and what every method here reads unless told
LayerTensors = dict[str, dict[str, Tensor]]


class Adapters:
    """A view of the adapters injected into ``model``. Its methods act on the adapter named ``default`` unless
    given a name: the one ``inject(..., name=...)`` added, for the view that call returns."""

    def __init__(self, model: nn.Module, default: str = DEFAULT_NAME) -> None:
        if not isinstance(model, nn.Module):  # e.g. (path, model) swapped: one line, not an AttributeError
            raise LowdimError(f"expected a torch nn.Module to hold adapters, got {type(model).__name__} {model!r:.60}")
        self._given = model  # a DataParallel/DDP wrapper is looked through (parallel.py); adding through DDP is not
        self.model = model = inner_model(model)
        self.default = default
        if not hasattr(model, STATE_ATTR):
            object.__setattr__(model, STATE_ATTR, {})
        self._infos: dict[str, AdapterInfo] = getattr(model, STATE_ATTR)

    if not TYPE_CHECKING:  # at run time only: a type checker still flags a name Adapters lacks
        def __getattr__(self, name: str) -> Any:  # only for names the class lacks: a peft name gets a pointer
            from lowdim.injection.peft_names import missing_attribute

            raise missing_attribute(type(self).__name__, name)

    def __repr__(self) -> str:
        """One line per adapter (name, space, scale, merged or disabled, layer count), as a notebook shows it;
        read from the slots in one pass over the model, and never raising."""
        return adapters_repr(self)

    # -- adding and removing --------------------------------------------------------------
    @makes_normal_tensors  # under torch.inference_mode too: inference tensors would break later forwards
    @refusing_peft_keywords  # target_modules=, r=, lora_alpha=: one line naming lowdim's way, as inject says it
    def add(
        self,
        name: str,
        space: Space,
        targets: LayerSet | str | Sequence[str],
        *,
        seed: int = 0,
        scale: float = 1.0,
        batch: int | None = None,
        device: torch.device | str | None = None,
        dropout: float = 0.0,
    ) -> AdapterInfo:
        """Inject a fresh adapter (ΔW = 0 with the space's default init) into every target layer.

        ``targets``: a pattern string or list of them, matched against the full dotted layer names: shell globs
        whose ``*`` crosses dots (``"*attn*.to_q"``), ``re:`` regular expressions (``"re:.*\\.q_proj"``), several
        comma-separated in one string: linear and 1x1-conv layers; or a ``LayerSet``, whose ``types`` pick the
        kinds (embeddings too).
        ``seed`` fixes the frozen bases and the init: adapters of one space and seed share their bases.
        ``scale`` multiplies the update (W + scale·ΔW; ``set_scale`` later). ``batch=K`` makes K per-sample
        adapters: sample j of the input uses adapter j % K. Adapter tensors live on each layer's device unless
        ``device`` says otherwise (a model on the meta device can still carry real adapter tensors, e.g. to
        measure file sizes). ``dropout`` zeroes that share of each update's input while the module trains
        (peft's ``lora_dropout``).
        """
        return adding.add(self, name, space, targets, seed=seed, scale=scale, batch=batch, device=device,
                          dropout=dropout)

    def delete(self, name: str | None = None) -> None:
        """Remove one adapter (unmerging it first); wrappers left empty are unwrapped."""
        name = self._name(name)
        self.info(name)
        self.unmerge(name)
        self._detach(name)

    def merge_and_unload(self, names: str | Sequence[str] | None = None) -> nn.Module:
        """Fold adapters (default: all) into the base weights for good and remove them, leaving the
        plain modules: a model to save or ship that needs no lowdim. Returns the model, as peft's does (the one
        inside a DataParallel/DDP)."""
        return merging.merge_and_unload(self, names)

    def _detach(self, name: str) -> None:
        holders = module_holders(self.model)
        for wrapper in self._wrappers(name):
            del wrapper.slots[name]
            if not len(wrapper.slots):
                unwrap(wrapper, holders)
        del self._infos[name]
        if not self._infos:
            unguard_loads(self.model)

    def remove_all(self) -> None:
        """Remove every adapter and restore the original modules and weights: exactly where none was merged, to
        within rounding (an ulp in fp32, as ``unmerge``) where one was, since no copy of the weights is kept."""
        for name in list(self._infos):
            self.delete(name)

    # -- lookup ---------------------------------------------------------------------------
    def _name(self, name: str | None) -> str:
        return self.default if name is None else name

    def names(self) -> list[str]:
        """The adapters on this model, in the order they were added."""
        return list(self._infos)

    def info(self, name: str | None = None) -> AdapterInfo:
        """What adapter ``name`` is (space, seed, layers, ...); a name not on the model is a LowdimError."""
        name = self._name(name)
        if name not in self._infos:
            known = ", ".join(self._infos) or "none"
            raise LowdimError(f"no adapter named '{name}' on this model; present: {known}")
        return self._infos[name]

    def _wrappers(self, name: str) -> Iterator[AdapterLayer]:
        for module in self.model.modules():
            if isinstance(module, AdapterLayer) and name in module.slots:
                yield module

    def slots(self, name: str | None = None) -> dict[str, AdapterSlot]:
        """Layer name -> this adapter's slot, in model order."""
        name = self._name(name)
        self.info(name)
        return {wrapper.layer_name: wrapper.slots[name] for wrapper in self._wrappers(name)}

    def parameters(self, name: str | None = None) -> list[nn.Parameter]:
        """The trainable parameters of one adapter, for an optimiser."""
        name = self._name(name)
        return [p for slot in self.slots(name).values() for p in slot.params.values() if p.requires_grad]

    def tensors(self, name: str | None = None) -> LayerTensors:
        """Layer name -> {param name -> tensor} (the stored params, not the buffers)."""
        name = self._name(name)
        return {layer: dict(slot.tensors()) for layer, slot in self.slots(name).items()}

    def buffers(self, name: str | None = None) -> LayerTensors:
        """Layer name -> {buffer name -> tensor}: the adapter's frozen bases, made from its seed (never saved)."""
        name = self._name(name)
        return {layer: slot.buffers_dict() for layer, slot in self.slots(name).items()}

    @makes_normal_tensors
    @torch.no_grad()
    def load_tensors(self, name: str, tensors: LayerTensors) -> None:
        """Copy params in; every layer and param of the adapter must be given, with its shape (checked before
        anything is copied)."""
        slots = self.slots(name)
        check_loadable(name, "params", slots, tensors, {layer: slot.params for layer, slot in slots.items()})
        for layer, slot in slots.items():
            for param_name, param in slot.params.items():
                param.copy_(tensors[layer][param_name])

    @makes_normal_tensors
    @torch.no_grad()
    def load_buffers(self, name: str, buffers: LayerTensors) -> None:
        """Copy the bases (buffers) in, as ``load_tensors`` copies the params: every layer and buffer given, with
        its shape (checked before anything is copied)."""
        slots = self.slots(name)
        wanted = {layer: slot.buffers_dict() for layer, slot in slots.items()}
        check_loadable(name, "buffers", slots, buffers, wanted)
        for layer, tensors in wanted.items():
            for buffer_name, buffer in tensors.items():
                buffer.copy_(buffers[layer][buffer_name])

    @contextlib.contextmanager
    def override(self, name: str, tensors: LayerTensors) -> Iterator[None]:
        """Run the model with computed tensors (e.g. a hypernetwork's output) in place of the params.

        Tensors may carry a leading batch dimension: sample j of the input uses adapter j % B.
        Gradients flow back into whatever produced them.
        """
        slots = self.slots(name)
        check_override(name, slots, tensors)
        outer = {layer: slot.override for layer, slot in slots.items()}  # overrides nest: the outer one returns
        try:
            for layer, slot in slots.items():
                slot.override = tensors[layer]
            yield
        finally:
            for layer, slot in slots.items():
                slot.override = outer[layer]

    # -- scale, enable, merge -------------------------------------------------------------
    @overload
    def set_scale(self, name: str, scale: float, layers: str | Sequence[str] | None = None) -> None: ...

    @overload
    def set_scale(self, scale: float, /, *, layers: str | Sequence[str] | None = None) -> None: ...

    @overload
    def set_scale(self, *, scale: float, layers: str | Sequence[str] | None = None) -> None: ...

    def set_scale(self, name: str | float | None = None, scale: float | None = None,
                  layers: str | Sequence[str] | None = None) -> None:
        """Scale an adapter's update: ``set_scale(0.5)`` this view's adapter (the one ``enable()`` acts on),
        ``set_scale(name, 0.5)`` any. ``layers`` (glob or ``re:`` patterns, as layer sets use) limits it to
        the layers they match, e.g. ``"text_encoder.*"`` to weaken only what it does to the prompt."""
        name, scale = scale_words(self, name, scale)
        check_scale(name, scale)
        slots = self.slots(name)
        if layers is not None:
            patterns = split_patterns(layers) if isinstance(layers, str) else list(layers)  # as targets are split
            slots = {layer: slot for layer, slot in slots.items() if any(matches(p, layer) for p in patterns)}
            if not slots:
                raise LowdimError(f"adapter '{name}': no layer matches {', '.join(patterns)}; "
                                  f"its layers are e.g. {', '.join(list(self.slots(name))[:3])}")
        for slot in slots.values():
            refuse_if_merged(name, slot, "changing its scale")
        for slot in slots.values():
            slot.scale = float(scale)

    def enable(self, name: str | None = None, enabled: bool = True) -> None:
        """Switch adapter ``name`` on (``enabled=False``: off) on every layer; refused for a merged adapter."""
        name = self._name(name)
        slots = self.slots(name).values()
        for slot in slots:  # all checked before any switch moves: a refusal changes nothing
            refuse_if_merged(name, slot, "enabling or disabling it")  # the weights would keep it applied
        for slot in slots:
            slot.enabled = enabled

    def disable(self, name: str | None = None) -> None:
        """``enable(name, False)``: the model runs as if adapter ``name`` were absent until it is enabled."""
        name = self._name(name)
        self.enable(name, False)

    @contextlib.contextmanager
    def disabled(self, names: str | Sequence[str] | None = None) -> Iterator[None]:
        """Run the model without adapter ``names`` inside the block (e.g. the base model's prediction in a loss):
        one name or several: ``disabled(adapters.names())`` runs the base model itself (peft's ``disable_adapter``).

        Each layer's switch is put back as it was on leaving, on an error too, so an adapter disabled
        before stays disabled. Refused, naming the adapter, where it is merged into the weights.
        """
        names = [self._name(names)] if names is None or isinstance(names, str) else list(names)
        slots = [(name, slot) for name in names for slot in self.slots(name).values()]
        for name, slot in slots:  # all checked before any switch moves, as enable does
            refuse_if_merged(name, slot, "enabling or disabling it")
        before = [slot.enabled for _, slot in slots]
        for _, slot in slots:
            slot.enabled = False
        try:
            yield
        finally:
            for (_, slot), enabled in zip(slots, before, strict=True):
                slot.enabled = enabled

    @makes_normal_tensors  # what it keeps for unmerge
    def merge(self, name: str | None = None, part: str = "all") -> None:
        """Fold the update into the base weights, so inference costs nothing extra.

        ``part='frozen'`` folds only a stack's frozen components (HyperDreamBooth §4.3). What was
        added is kept, so ``unmerge`` removes exactly that even if the params change meanwhile.
        """
        merging.merge(self, self._name(name), part)

    def unmerge(self, name: str | None = None) -> None:
        """Subtract what ``merge`` added, restoring the base weights up to float rounding."""
        merging.unmerge(self, self._name(name))

    # -- export ---------------------------------------------------------------------------
    def lora_factors(self, name: str | None = None) -> dict[str, tuple[Tensor, Tensor]]:
        """Exact LoRA form of the whole update per layer, scale folded into ``up``."""
        name = self._name(name)
        result = {}
        for layer, slot in self.slots(name).items():
            down, up = slot.space.factors(slot.tensors(), slot.buffers_dict())
            result[layer] = (down.detach(), up.detach() * slot.scale)
        return result

    def delta(self, name: str, layer: str) -> Tensor:
        """The dense update scale·ΔW that adapter ``name`` adds to ``layer``'s weight (out, in), for inspection."""
        slots = self.slots(name)
        if layer not in slots:
            raise LowdimError(f"adapter '{name}' has no layer '{layer}'; e.g. {', '.join(list(slots)[:3])}")
        slot = slots[layer]
        return slot.space.delta(slot.tensors(), slot.buffers_dict()) * slot.scale


@refusing_peft_keywords  # target_modules=, r=, lora_alpha=: one line naming lowdim's way
def inject(
    model: nn.Module,
    space: Space,
    targets: LayerSet | str | Sequence[str],
    name: str = DEFAULT_NAME,
    *,
    seed: int = 0,
    scale: float = 1.0,
    batch: int | None = None,
    device: torch.device | str | None = None,
    dropout: float = 0.0,
) -> Adapters:
    """Add one adapter to ``model`` and return the model's ``Adapters`` view, whose methods act on that adapter
    unless given another name.

    ``targets``: glob patterns whose ``*`` crosses dots (``"*attn*.to_q"``), ``re:`` regexes, several in one
    comma-separated string or a list, all matched against full dotted layer names; or a ``lowdim.LayerSet``.
    ``seed`` fixes the frozen bases and the init; ``scale`` multiplies the update (W + scale·ΔW); ``batch=K``
    makes K per-sample adapters (sample j uses adapter j % K); ``device`` puts the adapter's tensors elsewhere
    than each layer's; ``dropout`` as peft's ``lora_dropout``. More in ``help(lowdim.Adapters.add)``."""
    adapters = Adapters(model, default=name)
    adapters.add(name, space, targets, seed=seed, scale=scale, batch=batch, device=device, dropout=dropout)
    return adapters
