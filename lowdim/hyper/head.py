"""What every hypernetwork head is to the code that builds, calls, saves and loads it (``HyperHead``).

A head is any ``nn.Module`` a ``register_heads`` factory returns; ``build_hypernet`` and ``load_hypernet`` hand it
out typed as ``HyperHead``, so a type checker knows ``net(images)`` is ``{layer: {param: (B, *shape)}}`` (torch's
stubs type every module's call as Any) and that ``net.config`` is a ``HyperConfig``. lowdim's own heads subclass
it; a plugin's need not, as long as it has these attributes and takes this call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

from torch import Tensor, nn

from lowdim.hyper.config import HyperConfig
from lowdim.hyper.layout import LayerTensors
from lowdim.spaces.base import LayerSpec, Space


class HyperHead(nn.Module):
    """A hypernetwork head: ``config``, ``space``, ``layers`` (what it predicts, saved with it), ``metadata``
    (what ``load_hypernet`` read from the file), and a call that gives θ for a batch of images."""

    config: HyperConfig
    space: Space
    layers: list[LayerSpec]
    metadata: dict[str, Any]

    if TYPE_CHECKING:  # nn.Module.__call__ runs forward, typed Any in torch's stubs: the result per return_all
        @overload
        def __call__(self, images: Tensor | None, iterations: int | None = None, *, return_all: Literal[False] = False,
                     init: LayerTensors | None = None, features: Tensor | None = None) -> LayerTensors: ...

        @overload
        def __call__(self, images: Tensor | None, iterations: int | None = None, *, return_all: Literal[True],
                     init: LayerTensors | None = None, features: Tensor | None = None) -> list[LayerTensors]: ...

        @overload
        def __call__(self, images: Tensor | None, iterations: int | None = None, *, return_all: bool,
                     init: LayerTensors | None = None,
                     features: Tensor | None = None) -> LayerTensors | list[LayerTensors]: ...

        def __call__(self, images: Tensor | None, iterations: int | None = None, *, return_all: bool = False,
                     init: LayerTensors | None = None,
                     features: Tensor | None = None) -> LayerTensors | list[LayerTensors]: ...
