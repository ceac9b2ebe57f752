"""Weight spaces: pure math describing a low-dimensional ΔW for one linear layer."""

from lowdim.spaces.base import LayerSpec, Space, SpaceConfig, option
from lowdim.spaces.lidb import LidbConfig, LidbSpace
from lowdim.spaces.lora import LoraConfig, LoraSpace
from lowdim.spaces.stack import StackConfig, StackSpace
from lowdim.spaces.ti import TextualInversionConfig, TextualInversionSpace

__all__ = [
    "LayerSpec", "Space", "SpaceConfig", "option",
    "LoraConfig", "LoraSpace", "LidbConfig", "LidbSpace", "StackConfig", "StackSpace",
    "TextualInversionConfig", "TextualInversionSpace",
]
