"""Load a script of the checkout (benchmarks/, examples/) as a module, so its functions can be tested."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str, name: str | None = None) -> ModuleType:
    """``relative`` to the checkout's root; registered in sys.modules while it runs, as dataclasses need."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(name or f"lowdim_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
