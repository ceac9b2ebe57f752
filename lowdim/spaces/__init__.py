"""Weight spaces: pure math describing a low-dimensional ΔW for one linear layer."""

from lowdim._lazy import lazy_exports

# Loaded on first use: importing lowdim.spaces.builtin (a plugin module) must not import torch.
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
