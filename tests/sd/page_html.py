"""The `lowdim ui` tests' reading of the stages box's HTML as a browser shows it (tests/sd is on the path as pytest
puts it)."""

from __future__ import annotations

from html.parser import HTMLParser


class Shown(HTMLParser):
    """The tags of an HTML text, and the text of each paragraph and table cell as a browser shows it."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.blocks: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        if tag in ("p", "td", "th"):
            self.blocks.append("")

    def handle_data(self, data) -> None:
        if self.blocks:
            self.blocks[-1] += data

    @property
    def notes(self) -> list[str]:
        """The **Note:** paragraphs' words."""
        return [block.removeprefix("Note: ") for block in self.blocks if block.startswith("Note: ")]

    @property
    def rows(self) -> list[tuple[str, str]]:
        """The stage table's rows, its header first: (stage, seconds)."""
        cells = self.blocks[self.blocks.index("stage"):]
        return list(zip(cells[::2], cells[1::2], strict=True))
