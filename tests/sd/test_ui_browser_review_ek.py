"""Review EK in a real browser: a tab reloaded while its run runs stops the run, and says so on the server's console
and on the reloaded page's job line (the browser keeps the tab's session for its reload, sessionStorage); a value
then refused before any job replaces that line with its own, which stays once the toast fades."""

from __future__ import annotations

import re
import signal

import pytest

pytest.importorskip("selenium", reason="the browser test drives Chromium with selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from test_ui_browser import FACE, bar_shows, browser, finished_runs, set_number, text_of, wait  # noqa: E402, F401
from ui_servers import Server  # noqa: E402

pytestmark = pytest.mark.slow

RELOADED = re.compile(r"stopped: the personalization \(run (\d{8}-\d{6}-face)\) was stopped at its next step, as this "
                      r"tab was reloaded \(or closed\) while it ran; nothing of it was kept")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``lowdim ui --model tinyfaces`` on a free port, whose console (stderr) the test reads."""
    with Server(tmp_path_factory.mktemp("ui-server") / "ui-runs", threads=2) as started:
        yield started
        started.stop(signal.SIGTERM)


def drop_the_face(driver) -> None:
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"))
    driver.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(FACE))
    wait(driver, lambda d: "as it is" in text_of(d, "crop-note"))


def type_as_a_person(driver, selector: str, typed: str) -> None:
    """Select the field's text, delete it, type, leave the field: input events as a keyboard sends them
    (selenium's clear() sends none, and the field would send its earlier value: review EK's note)."""
    field = driver.find_element(By.CSS_SELECTOR, selector)
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    field.send_keys(typed)
    field.send_keys(Keys.TAB)


def test_a_reload_mid_run_is_said_on_the_console_and_the_reloaded_page(server, browser):  # noqa: F811
    before = finished_runs(server.out)
    browser.get(server.url)
    drop_the_face(browser)
    set_number(browser, "#steps input", 2000)
    browser.find_element(By.ID, "personalize").click()
    wait(browser, lambda d: bar_shows(d, "fast finetune"), 120)
    browser.refresh()
    wait(browser, lambda d: RELOADED.fullmatch(text_of(d, "job-line")), 60)
    [run] = RELOADED.fullmatch(text_of(browser, "job-line")).groups()  # type: ignore[union-attr]
    server.wait_for(lambda: f"lowdim ui: stopped the personalization (run {run}) at its next step, as the tab that "
                            f"started it was closed or reloaded; nothing of it was kept" in server.stderr,
                    "the console's line")
    assert finished_runs(server.out) == before and not list(server.out.glob(".*.partial"))
    drop_the_face(browser)
    type_as_a_person(browser, "#steps input", "2.5")
    browser.find_element(By.ID, "personalize").click()
    wait(browser, lambda d: text_of(d, "job-line") == "Finetune steps must be a whole number, got 2.5", 60)
