"""lowdim: tiny, fast personalization in pluggable low-dimensional weight spaces.

    import lowdim
    space = lowdim.get_space("lidb", a=100, b=50)
    adapters = lowdim.inject(model, space, ["*attn*.to_q", "*attn*.to_v"], seed=0)
    ...train adapters.parameters("default")...
    lowdim.save_adapter("me.safetensors", model, dtype="fp16")

``lowdim.inject`` is the function above, not the sub-package lowdim/inject/: import the sub-package's other names
with ``from``, e.g. ``from lowdim.inject import checkpointing_with_overrides``. pyright takes ``lowdim.inject`` for
the sub-package in a file that imports one of its modules; ``from lowdim import inject`` is the function there too.
"""

__version__ = "0.1.0"

import importlib as _importlib  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from lowdim._lazy import lazy_exports  # noqa: E402
from lowdim.errors import AdapterFileError, ConfigError, LowdimError, PluginError  # noqa: E402

# What type checkers and editors see; at run time __getattr__ below loads each on first use. Imported from the
# defining modules: the sub-packages make their names with __getattr__, which checkers read as Any.
if TYPE_CHECKING:
    from lowdim.file_loading import AdapterFile, load_adapter, read_adapter
    from lowdim.files import save_adapter
    from lowdim.inject.adapter_info import AdapterInfo
    from lowdim.inject.manager import Adapters, inject
    from lowdim.inject.relax import relax_rank
    from lowdim.inject.select import LayerSet
    from lowdim.inject.stacked import stacked_factors
    from lowdim.registry import Registry, get_registry, get_space, use_registry
    from lowdim.spaces.base import LayerSpec, Space, SpaceConfig, option, require

# The rest imports torch, so it loads on first use: `lowdim --help` and usage errors stay fast. Bound at run time
# only: a checker that sees a module __getattr__ takes any unknown name (a typo) for one of its results.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "lowdim.file_loading": ("AdapterFile", "load_adapter", "read_adapter"),
        "lowdim.files": ("save_adapter",),
        "lowdim.inject": ("AdapterInfo", "Adapters", "LayerSet", "inject", "relax_rank", "stacked_factors"),
        "lowdim.registry": ("Registry", "get_registry", "get_space", "use_registry"),
        "lowdim.spaces": ("LayerSpec", "Space", "SpaceConfig", "option", "require"),
    })

# `lowdim.inject` is a function, and lowdim/inject/ a subpackage: loading a subpackage sets it as an attribute
# of its parent. Load that (torch-free) subpackage now and drop the attribute, so no later
# `import lowdim.inject.select` can hide the function, which __getattr__ then answers.
_importlib.import_module("lowdim.inject")
globals().pop("inject", None)
del lazy_exports

__all__ = [
    "__version__",
    "AdapterFile", "AdapterFileError", "AdapterInfo", "Adapters", "ConfigError", "LayerSet", "LayerSpec",
    "LowdimError", "PluginError", "Registry", "Space", "SpaceConfig", "get_registry", "get_space", "inject",
    "load_adapter", "option", "read_adapter", "relax_rank", "require", "save_adapter", "stacked_factors",
    "use_registry",
]
