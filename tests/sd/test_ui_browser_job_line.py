"""Review CZ3 and CZ4 in a real browser: the running job's bar has a box of its own, as tall before and after the
bar shows, so nothing under it moves as a run starts and ends; a second Personalize in the same tab is refused in a
line the bar does not cover."""

from __future__ import annotations

import pytest

pytest.importorskip("selenium", reason="the browser test drives Chromium with selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from test_ui_browser import (  # noqa: E402, F401  (fixtures)
    FACE,
    bar_shows,
    browser,
    server,
    set_number,
    text_of,
    wait,
)

pytestmark = pytest.mark.slow

COVERED = ("const line = document.getElementById('job-line'); const box = line.getBoundingClientRect();"
           "const at = document.elementFromPoint(box.left + 5, box.top + box.height / 2); return !line.contains(at);")


def top(driver, element_id: str) -> float:
    return driver.execute_script("return document.getElementById(arguments[0]).getBoundingClientRect().top",
                                 element_id)


def test_the_bar_moves_nothing_and_a_second_click_is_refused_in_a_line_it_does_not_cover(server, browser):  # noqa: F811
    url, _ = server
    browser.get(url)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(FACE))
    wait(browser, lambda d: "as it is" in text_of(d, "crop-note"))
    set_number(browser, "#steps input", 2000)
    before = top(browser, "stages")
    browser.find_element(By.ID, "personalize").click()
    wait(browser, lambda d: bar_shows(d, "fast finetune"), 120)
    assert top(browser, "stages") == before  # the bar's box was as tall before it showed
    browser.find_element(By.ID, "personalize").click()
    wait(browser, lambda d: "already running" in text_of(d, "job-line"), 60)
    assert not browser.execute_script(COVERED)  # the refusal is readable, not under the bar
    wait(browser, lambda d: bar_shows(d, "fast finetune"), 30)  # the running job's bar still shows (a loaded
    # machine may redraw it a moment after the refused click's events)
    browser.find_element(By.ID, "stop").click()
    wait(browser, lambda d: "nothing of it was kept" in text_of(d, "job-line"), 60)
    assert top(browser, "stages") == before
