"""Names a user reaches on lowdim's lazily loaded packages, for a type checker to read (never run): the real ones
are typed, a typo is an error as on any typed package. ``tests/test_typing_user_scripts.py`` runs mypy on it; a
line ending ``# expect: CODE`` must be that error, and every other line must pass."""

from __future__ import annotations

from torch import nn
from typing_extensions import assert_type

import lowdim
import lowdim.hyper
import lowdim.injection
import lowdim.injection.select  # a sub-module of lowdim/injection/: the function lowdim.inject stays the function
from lowdim import Adapters, Space, inject
from lowdim.hyper import HyperConfig
from lowdim.injection import checkpointing_with_overrides


def names() -> None:
    space = lowdim.get_space("lora", rank=1)
    assert_type(space, Space)
    assert_type(inject(nn.Linear(4, 4), space, ["*"]), Adapters)
    assert_type(lowdim.inject(nn.Linear(4, 4), space, ["*"]), Adapters)
    assert_type(lowdim.hyper.HyperConfig(), HyperConfig)
    print(checkpointing_with_overrides)


def typos() -> None:
    print(lowdim.injcet)  # expect: attr-defined
    print(lowdim.save_adaptor)  # expect: attr-defined
    print(lowdim.hyper.HyperNetwrok)  # expect: attr-defined


def typo_imports() -> None:
    from lowdim import get_spaec  # expect: attr-defined
    from lowdim.hyper import HyperConfg  # expect: attr-defined
    from lowdim.injection import checkpointing_with_override  # expect: attr-defined

    print(get_spaec, HyperConfg, checkpointing_with_override)
