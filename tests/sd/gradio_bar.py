"""Gradio's progress bar as the page's handlers call it, and its words as Gradio's page writes them."""

from __future__ import annotations


def _short(number: float) -> str:
    """A count as Gradio 6's page writes it in the bar (its status tracker): over 1000 in k, M, ...: 2000 -> '2k'."""
    suffixes, index = ["", "k", "M", "G"], 0
    while number > 1000 and index < len(suffixes) - 1:
        number, index = number / 1000, index + 1
    return (str(int(number)) if float(number).is_integer() else f"{number:.1f}") + suffixes[index]


class Bar:
    """``gr.Progress`` as a handler receives it: what each call set."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, str | None, str]] = []

    def __call__(self, progress, desc=None, total=None, unit="steps"):
        self.calls.append((progress, desc, unit))

    def words(self, call: int = -1) -> str:
        """What the page shows for a call: a (done, total) count in Gradio's own short form, with its unit, then
        the description; a fraction shows only the description (and the percentage)."""
        progress, desc, unit = self.calls[call]
        if isinstance(progress, tuple):
            done, total = progress
            return f"{_short(done)}/{_short(total)} {unit} | {desc}"
        return desc or ""
