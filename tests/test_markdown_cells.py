"""A stranger's text in a markdown report (eval.md's picture names, a bench table's labels) shows as exactly that text.

What users rely on: a report they open in a markdown viewer says what the files said, and nothing a file holds
becomes a link, a picture, a tag, emphasis or another table cell in a report lowdim wrote. Checked against a real
CommonMark renderer with tables (markdown-it-py, which rich brings)."""

from __future__ import annotations

import html
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from lowdim_sd.markdown_cells import markdown_cell

RENDER = MarkdownIt("commonmark").enable("table")


def rendered_cells(text: str) -> list[str]:
    page = RENDER.render(f"| name |\n|---|\n| {markdown_cell(text)} |\n")
    return re.findall(r"<td>(.*?)</td>", page, flags=re.DOTALL)


def shown(text: str) -> str:
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text).strip()


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
def test_any_text_is_one_cell_that_shows_that_text_and_no_markup(text):
    cells = rendered_cells(text)
    assert len(cells) == 1
    assert "<" not in cells[0]  # no tag of any kind: a link, a picture, emphasis, code
    assert html.unescape(cells[0]) == shown(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["<img src=x onerror=alert(1)>", "[a](http://e)", "**b**", "|", "`c`", "&amp;",
                                 "\\", "\x1b[31m", "\n", "_i_", "![p](x.png)", "<http://e>", "a"]), max_size=8))
def test_markup_pieces_stay_text(pieces):
    text = "".join(pieces)
    cells = rendered_cells(text)
    assert len(cells) == 1 and "<" not in cells[0] and html.unescape(cells[0]) == shown(text)


def test_nothing_an_autolinker_takes_for_a_link_is_left_bare():
    """GitHub links bare URLs, www. names and e-mail addresses, which CommonMark alone does not show."""
    cell = markdown_cell("see http://evil.example, www.evil.example or me@evil.example")
    assert "http://" not in cell and "www." not in cell and "@" not in cell.replace("\\@", "")


def test_eval_md_shows_a_strangers_picture_names_as_text(tmp_path):
    from lowdim_sd.eval.report import EvalReport, MetricResult

    name = "x | <img src=x onerror=alert(1)> [a](http:e).png"
    report = EvalReport(images=[name, "01.png"], prompts=["a [V] face"] * 2,
                        results=[MetricResult("tinyfaces-identity", "Identity", [0.5, None])],
                        skipped_metrics={"clip-t": name}, skipped_images=[name], notes=[name])
    page = RENDER.render(report.to_markdown())
    assert "<img" not in page and "<a " not in page
    rows = re.findall(r"<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*</tr>", page)
    assert [html.unescape(cell) for cell, _ in rows][-2:] == [name, "01.png"]  # each picture one row, as named
    assert [score for _, score in rows][-2:] == ["0.500", "miss"]
    assert html.unescape(page).count(name) == 4  # in the table, the skipped metric, the left-out list and the note
