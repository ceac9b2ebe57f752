"""lowdim: tiny, fast personalization in pluggable low-dimensional weight spaces.

    import lowdim
    space = lowdim.get_space("lidb", a=100, b=50)
    adapters = lowdim.inject(model, space, ["*attn*.to_q", "*attn*.to_v"], seed=0)
    ...train adapters.parameters("default")...
    lowdim.save_adapter("me.safetensors", model, dtype="fp16")

The injection machinery's other names live in the sub-package ``lowdim.injection``, e.g.
``from lowdim.injection import checkpointing_with_overrides``.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING  # noqa: E402

from lowdim._lazy import lazy_exports  # noqa: E402
from lowdim.errors import AdapterFileError, ConfigError, LowdimError, PluginError  # noqa: E402

# What type checkers and editors see; at run time __getattr__ below loads each on first use. Imported from the
# defining modules: the sub-packages make their names with __getattr__, which checkers read as Any.
if TYPE_CHECKING:
    from lowdim.file_loading import AdapterFile, load_adapter, read_adapter
    from lowdim.files import save_adapter
    from lowdim.injection.adapter_info import AdapterInfo
    from lowdim.injection.manager import Adapters, inject
    from lowdim.injection.relax import relax_rank
    from lowdim.injection.select import LayerSet
    from lowdim.injection.stacked import stacked_factors
    from lowdim.registry import Registry, get_registry, get_space, use_registry
    from lowdim.spaces.base import LayerSpec, Space, SpaceConfig, option, require

# The rest imports torch, so it loads on first use: `lowdim --help` and usage errors stay fast. Bound at run time
# only: a checker that sees a module __getattr__ takes any unknown name (a typo) for one of its results.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "lowdim.file_loading": ("AdapterFile", "load_adapter", "read_adapter"),
        "lowdim.files": ("save_adapter",),
        "lowdim.injection": ("AdapterInfo", "Adapters", "LayerSet", "inject", "relax_rank", "stacked_factors"),
        "lowdim.registry": ("Registry", "get_registry", "get_space", "use_registry"),
        "lowdim.spaces": ("LayerSpec", "Space", "SpaceConfig", "option", "require"),
    })

del lazy_exports

__all__ = [
    "__version__",
    "AdapterFile", "AdapterFileError", "AdapterInfo", "Adapters", "ConfigError", "LayerSet", "LayerSpec",
    "LowdimError", "PluginError", "Registry", "Space", "SpaceConfig", "get_registry", "get_space", "inject",
    "load_adapter", "option", "read_adapter", "relax_rank", "require", "save_adapter", "stacked_factors",
    "use_registry",
]
