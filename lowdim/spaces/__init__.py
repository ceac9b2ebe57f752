"""Weight spaces: pure math describing a low-dimensional ΔW for one linear layer."""

from typing import TYPE_CHECKING

from lowdim._lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ below loads each on first use
    from lowdim.spaces.base import LayerSpec, Space, SpaceConfig, option, require
    from lowdim.spaces.lidb import LidbConfig, LidbSpace
    from lowdim.spaces.lora import LoraConfig, LoraSpace
    from lowdim.spaces.stack import StackConfig, StackSpace
    from lowdim.spaces.ti import TextualInversionConfig, TextualInversionSpace

# Loaded on first use: importing lowdim.spaces.builtin (a plugin module) must not import torch. Bound at run
# time only: a checker that saw a module __getattr__ would take any misspelt name for one of these.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "lowdim.spaces.base": ("LayerSpec", "Space", "SpaceConfig", "option", "require"),
        "lowdim.spaces.lidb": ("LidbConfig", "LidbSpace"),
        "lowdim.spaces.lora": ("LoraConfig", "LoraSpace"),
        "lowdim.spaces.stack": ("StackConfig", "StackSpace"),
        "lowdim.spaces.ti": ("TextualInversionConfig", "TextualInversionSpace"),
    })
del lazy_exports

__all__ = [
    "LayerSpec", "Space", "SpaceConfig", "option", "require",
    "LoraConfig", "LoraSpace", "LidbConfig", "LidbSpace", "StackConfig", "StackSpace",
    "TextualInversionConfig", "TextualInversionSpace",
]
