"""What a target pattern matches and what kind of layer a module is: the primitives that choosing layers
(``select``) and saying why a pattern chose none (``select_words``) both use, in a module below both. Torch-free at
import, as ``select`` is: plugins name LayerSets at import time, and ``lowdim --help`` loads them.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from typing import TYPE_CHECKING

from lowdim.errors import LowdimError

if TYPE_CHECKING:
    from torch import nn

LAYER_TYPES = ("linear", "conv1x1")
# Token embeddings are targets only when asked for by kind (Textual Inversion): a glob such as
# "text_encoder.*" must keep meaning the linear layers it always meant.
EMBEDDING = "embedding"


def matches(pattern: str, name: str) -> bool:
    """Whether a layer's dotted name matches one pattern: a shell glob (``*`` crosses dots) or ``re:REGEX``."""
    return compiled_pattern(pattern).fullmatch(name) is not None


def layer_kind(module: nn.Module) -> str | None:
    from torch import nn

    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Embedding):
        return EMBEDDING
    # Only a 1x1 conv that maps each pixel on its own is a linear layer per pixel (stride or padding
    # change the output grid, which a per-pixel update cannot follow).
    if (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
            and module.stride == (1, 1) and module.padding in ((0, 0), "valid")):
        return "conv1x1"
    return None


@functools.lru_cache(maxsize=1024)
def compiled_pattern(pattern: str) -> re.Pattern:
    """A pattern as one compiled regular expression that ``fullmatch`` tests exactly as ``matches`` does."""
    if not pattern.startswith("re:"):
        return re.compile(fnmatch.translate(pattern))
    try:
        return re.compile(pattern[3:])
    except re.error as error:
        raise LowdimError(f"layer pattern '{pattern}' is not a valid regular expression: {error}") from None


def literal_name(pattern: str) -> str | None:
    """The one name a pattern can match, when it is a plain name (a glob without wildcards, or an escaped regex)."""
    if not pattern.startswith("re:"):
        return None if any(char in pattern for char in "*?[") else pattern
    unescaped = re.sub(r"\\(.)", r"\1", pattern[3:])
    return unescaped if re.escape(unescaped) == pattern[3:] else None
