"""How an ``Adapters`` view words itself: its one-line-per-adapter repr, and what a ``set_scale`` call it cannot
read is told. Functions over the view, which keeps the public methods (and their docs), as ``adding`` does; they
read the view's own state (``_infos``, ``_name``), as the methods would."""

from __future__ import annotations

from numbers import Real
from typing import TYPE_CHECKING, Any

from lowdim.errors import LowdimError
from lowdim.filecheck import printable_name
from lowdim.injection.layer import AdapterLayer, AdapterSlot

if TYPE_CHECKING:
    from lowdim.injection.manager import Adapters


def adapters_repr(adapters: Adapters) -> str:
    """One line per adapter (name, space, scale, merged or disabled, layer count), as a notebook shows it;
    read from the slots in one pass over the model, and never raising."""

    def state(slots: list[AdapterSlot]) -> str:  # 'scale 0.25-1' where set per layer, then merged/disabled
        scales = sorted({slot.scale for slot in slots}) or [float("nan")]
        words = [f"scale {scales[0]:g}" + (f"-{scales[-1]:g}" if len(scales) > 1 else "")]
        merged = [slot.merged_scale is not None for slot in slots]
        if any(merged):
            words.append("merged" if all(merged) else "partly merged")
        elif any(slot.frozen_merged_scale is not None for slot in slots):
            words.append("frozen part merged")
        return ", ".join(words + (["disabled"] if any(not slot.enabled for slot in slots) else []))

    try:
        slots: dict[str, list[AdapterSlot]] = {name: [] for name in adapters._infos}
        for module in adapters.model.modules():
            if isinstance(module, AdapterLayer):
                for name, slot in module.slots.items():
                    slots.setdefault(name, []).append(slot)
        lines = [f"  {name}: {info.space.name}, {state(slots[name])}, {len(info.layers)} "
                 f"layer{'s' if len(info.layers) != 1 else ''}" for name, info in adapters._infos.items()]
    except Exception:  # a display must not fail: the view is there, its details are not
        return f"Adapters(on {type(adapters.model).__name__})"
    where = type(adapters.model).__name__
    if not lines:
        return f"Adapters(none on {where})"
    return f"Adapters({len(lines)} on {where}:\n" + "\n".join(lines) + ")"


def scale_words(adapters: Adapters, name: Any, scale: Any) -> tuple[str, Any]:
    """The adapter and scale a ``set_scale`` call means. A number alone is the scale, for the adapter the
    view's other methods pick; a call it cannot read is one line showing the call that would work."""
    if isinstance(name, Real) and scale is None:  # set_scale(0.5): the only argument is the scale
        name, scale = None, name
    if isinstance(name, Real):  # two numbers, or a number then layers given by position
        example = scale if isinstance(scale, Real) else name
        raise LowdimError(f"set_scale({name!r}, {scale!r}): with two arguments the first is the adapter's name, "
                          f"a str: set_scale({printable_name(example_name(adapters))}, {example!r}) names one, "
                          f"set_scale({name!r}, layers=...) scales some layers of this view's adapter")
    if name is not None and not isinstance(name, str):
        raise LowdimError(f"set_scale: the adapter's name must be a str, got {type(name).__name__} {name!r:.60}")
    if scale is None:
        named = "" if name is None else printable_name(name)
        raise LowdimError(f"set_scale({named}): no scale given; e.g. set_scale({named + ', ' if named else ''}0.5)")
    if name is None:
        name = adapters._name(None)
        if name not in adapters._infos and adapters._infos:  # with none at all, slots() says 'present: none'
            present = ", ".join(printable_name(known) for known in adapters._infos)
            raise LowdimError(f"set_scale({scale!r}) acts on this view's adapter {printable_name(name)}, which "
                              f"is not on this model; it has {present}: name one, e.g. "
                              f"set_scale({printable_name(example_name(adapters))}, {scale!r})")
    return name, scale


def example_name(adapters: Adapters) -> str:
    """The name a refusal's example call shows: this view's adapter if attached, else the first one."""
    default = adapters._name(None)
    return default if default in adapters._infos or not adapters._infos else next(iter(adapters._infos))
