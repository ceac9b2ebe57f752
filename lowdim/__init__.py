"""lowdim: tiny, fast personalization in pluggable low-dimensional weight spaces.

    import lowdim
    space = lowdim.get_space("lidb", a=100, b=50)
    adapters = lowdim.inject(model, space, ["*attn*.to_q", "*attn*.to_v"], seed=0)
    ...train adapters.parameters("default")...
    lowdim.save_adapter("me.safetensors", model, dtype="fp16")
"""

__version__ = "0.1.0"

from lowdim.errors import AdapterFileError, ConfigError, LowdimError, PluginError  # noqa: E402
from lowdim.files import AdapterFile, load_adapter, read_adapter, save_adapter  # noqa: E402
from lowdim.inject import AdapterInfo, Adapters, LayerSet, inject, relax_rank, stacked_factors  # noqa: E402
from lowdim.registry import Registry, get_registry, get_space, use_registry  # noqa: E402
from lowdim.spaces import LayerSpec, Space, SpaceConfig, option  # noqa: E402

__all__ = [
    "__version__",
    "AdapterFile", "AdapterFileError", "AdapterInfo", "Adapters", "ConfigError", "LayerSet", "LayerSpec",
    "LowdimError", "PluginError", "Registry", "Space", "SpaceConfig", "get_registry", "get_space", "inject",
    "load_adapter", "option", "read_adapter", "relax_rank", "save_adapter", "stacked_factors", "use_registry",
]
