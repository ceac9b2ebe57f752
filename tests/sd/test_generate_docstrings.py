"""``help(GenerateConfig)`` and ``help(Generated)`` in a notebook say what each field means (review R9), not only
the signature dataclasses write when a class has no docstring of its own."""

from __future__ import annotations

import dataclasses
import re

import pytest

from lowdim_sd.generate import GenerateConfig, Generated


@pytest.mark.parametrize("cls", [GenerateConfig, Generated])
def test_every_field_is_described_in_the_class_docstring(cls):
    doc = cls.__doc__ or ""
    assert not doc.startswith(cls.__name__ + "(")  # dataclasses' generated signature
    missing = [f.name for f in dataclasses.fields(cls) if not re.search(rf"(^|\s|``){f.name}(:|``)", doc, re.M)]
    assert missing == []
