"""What a refusal says to each reader: a Python caller, and the ``lowdim`` command (``option_words``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lowdim import option_words
from lowdim.errors import LowdimError


def both(call: Callable[[], object]) -> tuple[str, str]:
    """What ``call()`` refuses with from Python, and under the ``lowdim`` command."""
    with pytest.raises(LowdimError) as python:
        call()
    with option_words.command_line(), pytest.raises(LowdimError) as cli:
        call()
    return str(python.value), str(cli.value)
