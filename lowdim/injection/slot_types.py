"""The types of what an adapter wrapper holds, as type checkers see them (``lowdim/injection/layer.py``, ``slot.py``).

Annotations and aliases only: nothing here adds work at runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

if TYPE_CHECKING:
    from collections.abc import ItemsView, ValuesView

    from lowdim.injection.layer import AdapterSlot

BaseLayer = nn.Linear | nn.Conv2d | nn.Embedding  # what lowdim.injection.select picks to wrap

# How a slot's ``params._parameters`` and ``_buffers`` are cast: nn.Module types their values as Optional, but a
# slot registers no None in either.
ParamDict = dict[str, nn.Parameter]
BufferDict = dict[str, Tensor]

if TYPE_CHECKING:
    class SlotDict(nn.ModuleDict):
        """``AdapterLayer.slots``, a plain ModuleDict at runtime: adapter name -> AdapterSlot."""

        def __getitem__(self, key: str) -> AdapterSlot: ...
        def items(self) -> ItemsView[str, AdapterSlot]: ...
        def values(self) -> ValuesView[AdapterSlot]: ...
        def pop(self, key: str) -> AdapterSlot: ...
else:
    SlotDict = nn.ModuleDict
