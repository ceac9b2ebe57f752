"""lowdim's bars in a Jupyter notebook (review AC1): rich draws a live bar there only through ipywidgets; without it
the bar is not drawn at all (as off a terminal: no third-party warning, the listener still hears every step), and
with it the bar's last frame is drawn and no empty output is left in the cell after it."""

from __future__ import annotations

import io
import sys
import types
import warnings

import IPython.display
import pytest
from rich.console import Console

from lowdim_sd import runs


class Cell:
    """A notebook cell's outputs: what ``IPython.display.display`` shows, in the cell or in the Output widget
    being written to (a stand-in for ipywidgets' Output, which rich draws a live bar in)."""

    def __init__(self) -> None:
        self.outputs: list[object] = []
        self.writing_to: Widget | None = None

    def display(self, *shown: object, **_: object) -> None:
        for thing in shown:
            (self.writing_to.frames if self.writing_to else self.outputs).append(thing)


class Widget:
    cell: Cell

    def __init__(self) -> None:
        self.frames: list[object] = []

    def clear_output(self, wait: bool = False) -> None:
        self.frames.clear()

    def __enter__(self) -> Widget:
        self.cell.writing_to = self
        return self

    def __exit__(self, *_: object) -> None:
        self.cell.writing_to = None


@pytest.fixture
def cell(monkeypatch) -> Cell:
    """A notebook kernel: lowdim's bar console is a Jupyter one, and what it displays lands in ``cell``."""
    shown = Cell()
    monkeypatch.setattr(IPython.display, "display", shown.display)
    monkeypatch.setattr(runs, "bar_console", lambda: Console(file=io.StringIO(), force_jupyter=True, width=80))
    return shown


def run_a_bar(steps: int = 3) -> list[tuple[str, int, int]]:
    heard = []
    with runs.listen(lambda *step: heard.append(step)), runs.progress(steps, "training") as advance:
        for _ in range(steps):
            advance(0.5)
    return heard


def text_of(output: object) -> str:
    return getattr(output, "text", "")


def test_without_ipywidgets_no_bar_is_drawn_nor_warned_about_and_the_listener_still_hears(cell, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed: importing it fails
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rich's 'install "ipywidgets" for Jupyter support' would raise here
        heard = run_a_bar()
    assert heard == [("training", 1, 3), ("training", 2, 3), ("training", 3, 3)]
    assert cell.outputs == []  # not even an empty <pre>


def test_with_ipywidgets_the_bar_draws_its_last_frame_and_leaves_no_empty_output(cell, monkeypatch):
    Widget.cell = cell
    monkeypatch.setitem(sys.modules, "ipywidgets", types.SimpleNamespace(Output=Widget, __spec__=object()))
    heard = run_a_bar()
    [widget] = cell.outputs  # the bar's widget, and no empty output after it
    assert isinstance(widget, Widget)
    assert "3/3" in "".join(map(text_of, widget.frames))  # the finished bar, not a frame before the end
    assert heard[-1] == ("training", 3, 3)
