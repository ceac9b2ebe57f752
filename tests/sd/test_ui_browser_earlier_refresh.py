"""Review CZ5 in a real browser: a run another tab finished joins *Earlier runs* within a few seconds, with no
click, and what the user is typing there meanwhile stays as typed."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("selenium", reason="the browser test drives Chromium with selenium (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from test_ui_browser import browser, server, wait  # noqa: E402, F401  (fixtures; skips where no Chromium)

pytestmark = pytest.mark.slow
RECORD = {"settings": {"model": "tinyfaces"}, "stages": {"finetune": 5.0},
          "gallery": [{"file": "gallery/00.png", "caption": "a [V] face"}],
          "downloads": {"lowdim adapter": "adapter.safetensors"}}


def publish(out, name: str) -> None:
    """A finished run, as another tab's Personalize leaves it: made hidden, then renamed to its name."""
    partial = out / f".{name}.partial"
    (partial / "gallery").mkdir(parents=True)
    (partial / "gallery" / "00.png").write_bytes(b"")
    (partial / "adapter.safetensors").write_bytes(b"")
    (partial / "run.json").write_text(json.dumps(RECORD))
    partial.rename(out / name)


def offered(driver) -> list[str]:
    """The names the open list under Earlier runs offers (those matching what is typed)."""
    return [item.get_attribute("aria-label")
            for item in driver.find_elements(By.CSS_SELECTOR, "#earlier [data-testid=dropdown-option]")]


def test_another_tabs_run_is_listed_without_a_click_and_the_typed_text_stays(server, browser):  # noqa: F811
    url, out = server
    browser.get(url)
    field = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#earlier input"), 60)[0]
    field.click()
    field.send_keys("2026")  # the user is typing a name, the list open under it
    name = "20261206-170000-other-tab"
    assert name not in offered(browser)
    publish(out, name)
    wait(browser, lambda d: name in offered(d), 15)  # the timer's tick, every few seconds
    assert field.get_attribute("value") == "2026"
