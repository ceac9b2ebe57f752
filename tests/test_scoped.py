"""lowdim.scoped: the per-run settings (a command line's wording, a progress listener, a console) hold for one
block and come back however it ends, so one run's setting never leaks into the next run in the process."""

from __future__ import annotations

import threading
from contextvars import ContextVar

import pytest

from lowdim.scoped import scoped

SETTING: ContextVar[str] = ContextVar("setting", default="default")


def test_the_value_holds_inside_and_the_earlier_one_comes_back_after_nested_blocks():
    with scoped(SETTING, "outer"):
        with scoped(SETTING, "inner"):
            assert SETTING.get() == "inner"
        assert SETTING.get() == "outer"
    assert SETTING.get() == "default"


def test_an_error_or_ctrl_c_inside_still_puts_the_earlier_value_back():
    for stop in (ValueError("bad input"), KeyboardInterrupt()):
        with pytest.raises(type(stop)), scoped(SETTING, "run"):
            raise stop
        assert SETTING.get() == "default"


def test_another_thread_does_not_see_the_value():
    seen: list[str] = []
    with scoped(SETTING, "this thread"):
        worker = threading.Thread(target=lambda: seen.append(SETTING.get()))
        worker.start()
        worker.join()
    assert seen == ["default"]


def test_the_value_is_set_when_the_block_starts_not_when_scoped_is_called():
    block = scoped(SETTING, "later")
    assert SETTING.get() == "default"
    with block:
        assert SETTING.get() == "later"
