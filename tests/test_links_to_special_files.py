"""A link to a FIFO is what it points at: refused at once as a FIFO, never opened (an open would wait for a writer
forever) and never called missing (review AY9)."""

from __future__ import annotations

import os

import pytest

import lowdim
from lowdim.atomic import refuse_special


@pytest.fixture
def link_to_fifo(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link-to-fifo").symlink_to(tmp_path / "fifo")
    return tmp_path / "link-to-fifo"


def test_a_link_to_a_fifo_given_as_a_file_is_refused_as_a_fifo(link_to_fifo):
    with pytest.raises(lowdim.LowdimError) as refused:
        refuse_special(link_to_fifo)
    assert str(refused.value) == f"{link_to_fifo}: not a regular file (a FIFO); give a file or a folder"


def test_a_library_read_through_a_link_to_a_fifo_says_what_it_is(link_to_fifo):
    with pytest.raises(lowdim.LowdimError, match=r"link-to-fifo: not a regular file \(a FIFO\)"):
        lowdim.read_adapter(link_to_fifo)
