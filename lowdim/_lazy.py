"""Package attributes loaded on first use (PEP 562), so importing a package does not import torch."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name in ``exports[module]`` comes from ``module``,
    imported the first time the name is read, then kept in the package's namespace. Any other name is tried
    as a submodule: code that reached ``lowdim.files.DTYPES`` after a bare ``import lowdim`` (which used to
    import lowdim.files on the way) keeps working.

    Bind them at run time only (``if not TYPE_CHECKING:``), beside an ``if TYPE_CHECKING:`` import of each name:
    a type checker that sees a module ``__getattr__`` answers every unknown name, a typo too, with its result."""
    origin = {name: module for module, names in exports.items() for name in names}
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = origin.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
            namespace[name] = value
            return value
        if not name.startswith("_"):
            try:
                return importlib.import_module(f"{package}.{name}")  # which also sets it on the package
            except ModuleNotFoundError as error:
                if error.name != f"{package}.{name}":
                    raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *origin})

    return __getattr__, __dir__
