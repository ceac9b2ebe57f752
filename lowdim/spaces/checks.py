"""What a registered space class must be before any command uses it, checked as a plugin registers it.

A class that cannot be built (an abstract method left out, a config option without a default) would
otherwise be listed by ``lowdim spaces`` and fail, deep in a traceback, only in the command that builds
it; a name the command line cannot carry would shadow or garble another. Each is one line naming the
class, which the plugin loader turns into a warning that names the plugin (lowdim.plugins.call_each).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import re
import typing
from typing import Any

from lowdim.errors import LowdimError

NAME = re.compile(r"[a-z0-9][a-z0-9_.+-]*")  # what --space NAME and a file's metadata carry unchanged


def refuse_a_broken_space_class(space_class: Any) -> None:
    from lowdim.spaces.base import Space, SpaceConfig

    if not (isinstance(space_class, type) and issubclass(space_class, Space)):
        raise TypeError(f"register_spaces expects a Space subclass, got {space_class!r}")
    shown = space_class.__name__
    name = getattr(space_class, "name", None)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise LowdimError(f"space class {shown}: name {name!r} must be lower-case letters, digits and . _ + - "
                          f"(starting with a letter or digit), as --space NAME and adapter files carry it")
    if inspect.isabstract(space_class):
        missing = ", ".join(sorted(space_class.__abstractmethods__))
        raise LowdimError(f"space '{name}' ({shown}) does not define {missing}, which every space must")
    config_class = getattr(space_class, "config_class", None)
    if not (isinstance(config_class, type) and issubclass(config_class, SpaceConfig)
            and dataclasses.is_dataclass(config_class)):
        raise LowdimError(f"space '{name}' ({shown}): config_class must be a SpaceConfig dataclass, got "
                          f"{config_class!r}")
    bare = [field.name for field in dataclasses.fields(config_class)
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
    if bare:
        raise LowdimError(f"space '{name}' ({shown}): option '{bare[0]}' of {config_class.__name__} has no "
                          f"default; every option needs one (lowdim.option(default, help=...)), since "
                          f"get_space('{name}') builds the space with none given")
    if problem := inherited_config_problem(space_class, config_class):
        raise LowdimError(f"space '{name}' ({shown}): {problem}")
    if problem := class_attribute_problem(space_class):
        raise LowdimError(f"space '{name}' ({shown}): {problem}")
    warn_of_options_without_help(space_class, config_class)


def inherited_config_problem(space_class: type, config_class: type) -> str | None:
    """Why ``config_class`` cannot be the config of a space derived from another space (None: it can): the parent's
    methods read its own config's options, so another config fails there, as an AttributeError deep in a command.
    Read from each parent space's ``config_class`` and a ``Space[SomeConfig]`` base, beyond the base SpaceConfig."""
    from lowdim.spaces.base import Space, SpaceConfig

    parents = [(base.__name__, getattr(base, "config_class", None)) for base in space_class.__bases__
               if issubclass(base, Space)]
    for generic in getattr(space_class, "__orig_bases__", ()):
        origin, arguments = typing.get_origin(generic), typing.get_args(generic)
        if isinstance(origin, type) and issubclass(origin, Space) and arguments:
            parents.append((f"{origin.__name__}[{getattr(arguments[0], '__name__', arguments[0])}]", arguments[0]))
    for parent, wanted in parents:
        if isinstance(wanted, type) and wanted is not SpaceConfig and not issubclass(config_class, wanted):
            return (f"config_class {config_class.__name__} is no subclass of {wanted.__name__}, the config of "
                    f"{parent}, which it derives from (its methods read self.config as one)")
    return None


def class_attribute_problem(space_class: Any) -> str | None:
    """What is wrong with the optional class attributes a space declares (None: nothing). Read only by the
    commands, far from the plugin: a bad rate would read as a bad --lr, a string "no" as learns_tokens on."""
    rate = getattr(space_class, "learning_rate", None)
    if problem := learning_rate_problem(rate):
        return problem
    tokens = getattr(space_class, "learns_tokens", False)
    if not isinstance(tokens, bool):
        return f"learns_tokens = {_shown(tokens)} must be True or False"
    summary = getattr(space_class, "summary", "")
    if not isinstance(summary, str):
        return f"summary = {_shown(summary)} must be a string (`lowdim spaces` shows it)"
    return None


def learning_rate_problem(rate: object) -> str | None:
    """Why a space's declared ``learning_rate`` is no rate a run can start at (None: it is one, or None)."""
    if rate is None or (isinstance(rate, numbers.Real) and not isinstance(rate, bool) and math.isfinite(rate)
                        and float(rate) > 0):
        return None
    return (f"learning_rate = {_shown(rate)} must be a number > 0 (the rate `lowdim train` starts the space at "
            f"without --lr), or None for the backend's")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def warn_of_options_without_help(space_class: Any, config_class: type) -> None:
    """An option declared as a plain dataclass default works, but `lowdim spaces -v` shows its help blank:
    a warning naming it and the fix, not a refusal (the space is usable as it is)."""
    import warnings

    from lowdim.plugin_calling import as_the_plugins
    from lowdim.plugins import PluginWarning

    fields = dataclasses.fields(config_class)
    blank = [field.name for field in fields if not str(field.metadata.get("help", "")).strip()]
    if blank:
        options = "option " + ", ".join(f"'{option}'" for option in blank)
        warnings.warn(as_the_plugins(
            f"space '{space_class.name}' ({space_class.__name__}): {options} of {config_class.__name__} "
            f"{'has' if len(blank) == 1 else 'have'} no help text, so `lowdim spaces -v` shows it blank; declare it "
            f"with lowdim.option(default, help)"), PluginWarning, stacklevel=4)


def warn_if_init_is_not_zero(space_class: Any) -> None:
    """A default init whose ΔW is not 0 changes the model before any training (and breaks rank relaxation,
    which starts from the model as it is): said once, when the space is first built, on a small probe layer.
    A space that cannot be built on the probe is left to the contract suite."""
    import warnings

    import torch

    from lowdim.plugins import PluginWarning
    from lowdim.spaces.base import LayerSpec

    layer = LayerSpec("probe", 12, 10)
    try:
        space = space_class()
        params = space.init_params(layer, torch.Generator().manual_seed(0))
        buffers = {key: value.float() for key, value in space.make_buffers(layer, 1).items()}
        down, up = space.factors({key: value.float() for key, value in params.items()}, buffers)
        largest = float((up @ down).abs().max())
    except Exception:  # noqa: BLE001  (a probe that does not fit this space proves nothing)
        return
    if largest > 0:
        warnings.warn(f"space '{space_class.name}': its default init gives ΔW ≠ 0 (largest entry {largest:.3g} on a "
                      f"12x10 layer), so adding it changes the model before any training; every space must start "
                      f"at ΔW = 0 (docs/plugins.md)", PluginWarning, stacklevel=2)
