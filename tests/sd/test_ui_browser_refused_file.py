"""Task FCV in a real browser: a file Draw's check refuses leaves Draw's file box empty and Draw drawing the run
shown, with the refusal in its toast and no red "Error" badge over the prompt or Draw's line. A box holding a file
has no drop zone here, so a file over a good one is tested in-process (test_ui_refused_adapter_file.py).
Chromium as test_ui_browser, which skips where there is none."""

from __future__ import annotations

import time

import pytest

# By through test_ui_browser, which skips this module too where selenium or Chromium is missing
from test_ui_browser import (  # noqa: F401  (fixtures)
    By,
    browser,
    error_badges,
    open_run,
    quick_run,
    server,
    shows,
    text_of,
    wait,
)

pytestmark = pytest.mark.slow


def test_a_refused_file_leaves_the_box_empty_and_draw_drawing_the_run_with_no_badge(server, browser, quick_run,  # noqa: F811
                                                                              tmp_path):
    url, _ = server
    notes = tmp_path / "notes.txt"
    notes.write_text("a photo of me\n")
    browser.get(url)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#earlier input"))
    open_run(browser, quick_run.name)

    def drawing(d) -> str:  # Draw's line, as one line (the page wraps it where the column ends)
        return " ".join(text_of(d, "drawing").split())

    wait(browser, lambda d: drawing(d) == f"Draw draws run {quick_run.name}", 60)
    browser.find_element(By.CSS_SELECTOR, "#adapter-file input[type=file]").send_keys(str(notes))
    wait(browser, lambda d: shows(d, "notes.txt is not an adapter"), 30)
    wait(browser, lambda d: drawing(d) == f"Draw draws run {quick_run.name}", 30)
    time.sleep(1)  # the box's own change after it is emptied would have run by now
    box = text_of(browser, "adapter-file")
    assert "notes.txt" not in box and browser.find_elements(By.CSS_SELECTOR, "#adapter-file input[type=file]")
    assert drawing(browser) == f"Draw draws run {quick_run.name}"
    assert error_badges(browser) == ["toast-title"]  # the refusal's toast
