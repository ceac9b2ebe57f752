"""Review CR4 in a real browser: Earlier runs emptied, Open asks for a run instead of opening the last name again
(Gradio's Dropdown that takes typed names commits no emptied text; the page's Open reads the text shown)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("selenium", reason="the browser test drives Chromium with selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from test_ui_browser import browser, open_run, quick_run, server, shows, text_of, wait  # noqa: E402, F401  (fixtures)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("emptied", ["cleared", "keys"])
def test_an_emptied_earlier_runs_box_opens_nothing_and_asks_for_a_run(server, browser, quick_run,  # noqa: F811
                                                                       emptied):
    url, _ = server
    browser.get(url)
    open_run(browser, quick_run.name)
    wait(browser, lambda d: quick_run.name in text_of(d, "stages"), 60)
    field = browser.find_element(By.CSS_SELECTOR, "#earlier input")
    if emptied == "keys":  # select all, delete: as a person does
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.BACKSPACE)
    else:  # the field's text set to '' (as selenium's clear() sets it: the box shows it empty, review CR4)
        field.clear()
    time.sleep(0.5)
    browser.find_element(By.ID, "open").click()
    wait(browser, lambda d: shows(d, "pick an earlier run first"), 30)
    # the failed Open clears the run shown: in its follow-up event, which a loaded machine may run a moment later
    wait(browser, lambda d: quick_run.name not in text_of(d, "stages"), 30)
