"""A progress bar's label is user text (an identity's folder, a path, a task's name): the bar shows it as given.

Rich reads a column's text as markup unless told otherwise, so `me[v]` would lose its bracket and `x[/]y` would
stop the run with rich's MarkupError."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from lowdim_sd import runs

LABELS = ["faces/me[v]", "x[/]y", r"out\[bold]/[red]me"]


def recording_console() -> Console:
    return Console(file=io.StringIO(), record=True, force_terminal=True, width=120)


@pytest.mark.parametrize("loss", [True, False])
@pytest.mark.parametrize("first", LABELS)
def test_a_bar_shows_its_label_as_given(first: str, loss: bool) -> None:
    console = recording_console()
    with runs.progress(2, first, console=console, loss=loss) as advance:
        advance(0.5)
    assert first in console.export_text()


@pytest.mark.parametrize("first, then", [(LABELS[0], LABELS[1]), (LABELS[1], LABELS[2]), (LABELS[2], LABELS[0])])
def test_a_bar_renamed_as_it_advances_shows_the_new_label_as_given(first: str, then: str) -> None:
    console = recording_console()
    heard: list[str] = []
    with runs.listen(lambda label, done, total: heard.append(label)), \
            runs.progress(2, first, console=console, loss=False) as advance:
        advance(label=then)
        advance()
    assert then in console.export_text()  # not in a frame before the rename: no label here holds another
    assert heard[-1] == then
