"""What a registered space class must be before any command uses it, checked as a plugin registers it.

A class that cannot be built (an abstract method left out, a config option without a default) would
otherwise be listed by ``lowdim spaces`` and fail, deep in a traceback, only in the command that builds
it; a name the command line cannot carry would shadow or garble another. Each is one line naming the
class, which the plugin loader turns into a warning that names the plugin (lowdim.plugins.call_each).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
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
