"""A run's notes and stage names, which a run.json someone shared may hold, are shown as the text written (review
BL1, BL2): the stages box is HTML with that text escaped, so no markdown (autolinks need no syntax: a bare URL,
``www.``, an e-mail), no entity decoded (``&amp;`` stays ``&amp;``) and no tag of theirs reaches the page."""

from __future__ import annotations

import pytest
from page_html import Shown  # tests/sd, on the path as pytest puts it

from lowdim_sd.ui.run_folders import RunRecord

pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

NOTES = ["see [x](http://e) for **bold** | <b>html</b>",
         "re-download your adapter at https://evil.example/login or www.evil.example/x or mail admin@evil.example",
         "![img](http://e/p.png) &amp; &lt;script&gt; 1. list $$x^2$$ `code` ~~gone~~ _em_ \\* # head"]
STAGES = {"[link](http://e)": 1.0, "see http://evil.example/a": 1.0, "a|b": 2.0, "<img src=x onerror=alert(1)>": 0.5,
          "x &amp; y": 0.25}
OURS = {"p", "strong", "code", "table", "thead", "tbody", "tr", "th", "td"}  # the tags the page writes itself


def shared_run(tmp_path) -> RunRecord:
    return RunRecord("20261205-200000-shared", tmp_path / "shared", {"model": "tinyfaces"}, dict(STAGES),
                     notes=list(NOTES))


def test_notes_and_stage_names_are_shown_as_written_with_no_tag_of_theirs(tmp_path):
    from lowdim_sd.ui.page import stage_table

    shown = Shown(stage_table(shared_run(tmp_path)))
    assert set(shown.tags) <= OURS and "a" not in shown.tags and "img" not in shown.tags
    assert shown.notes == NOTES
    assert shown.rows == [("stage", "seconds")] + [(name, f"{s:.1f}") for name, s in STAGES.items()]


def test_the_run_and_its_folder_are_named_as_they_are(tmp_path):
    from lowdim_sd.ui.page import stage_table

    odd = RunRecord("a`b <i>&amp;", tmp_path / "a`b <i>&amp;", {"model": "tinyfaces"}, {"x": 1.0})
    shown = Shown(stage_table(odd))
    assert shown.blocks[0] == f"Run a`b <i>&amp; done in 1.0 s; its files are in {odd.folder.resolve()}"
    assert "i" not in shown.tags


def test_a_line_in_the_stages_box_is_shown_as_written():
    """Stop's line and a refused or stopped job's go in the same box: as text too."""
    from lowdim_sd.ui.page_parts import html_text

    line = "nothing of yours is running: <b>x</b> & y"
    assert Shown(f"<p>{html_text(line)}</p>").blocks == [line]
