"""Where the page draws a job's progress bar (review BU2): once, in its own box under the job line (under Personalize
and Stop) for a Personalize, so a refusal's line beside it stays readable (review CZ4), and not over the stages box,
where a run opened meanwhile shows its stage table (review CR1); in the stages
box for an Open, and on Draw's own line for a Draw. Gradio draws an event's bar (and its failure's badge)
over each component in its ``show_progress_on``, or over every output where it names none: that hid Earlier runs,
the gallery, Downloads and Draw's prompt for as long as a run ran."""

from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    """The page's config, as the browser reads it."""
    from lowdim_sd.ui.page import build_page
    from lowdim_sd.ui.studio import Studio, StudioConfig

    page = build_page(Studio(StudioConfig(model="tinyfaces", out=tmp_path_factory.mktemp("ui"))))
    return page.get_config_file()


def bar_places(config: dict, event: dict) -> list[str | None]:
    """The elem_ids of the components the page draws ``event``'s bar over, as Gradio's page picks them."""
    ids = {component["id"]: component["props"].get("elem_id") for component in config["components"]}
    return [ids[place] for place in (event.get("show_progress_on") or event["outputs"])]


def event(config: dict, api_name: str) -> dict:
    [found] = [dep for dep in config["dependencies"] if dep.get("api_name") == api_name]
    return found


@pytest.mark.parametrize(("api_name", "place"), [("personalize", "job-bar"), ("open_run", "stages"),
                                                 ("draw_more", "drawing")])
def test_a_jobs_bar_is_drawn_once_in_its_own_place(config, api_name, place):
    assert bar_places(config, event(config, api_name)) == [place]


@pytest.mark.parametrize(("api_name", "place"), [("personalize", "job-bar"), ("open_run", "stages"),
                                                 ("draw_more", "drawing")])
def test_a_failures_follow_up_clears_only_where_the_bar_was(config, api_name, place):
    """The failed event's badge sits where its bar was; the follow-up that clears the run shown (or, for Draw, marks
    the pictures shown as the earlier draw's) is over at once, and draws nothing over the other controls either."""
    failed = event(config, api_name)
    [follow_up] = [dep for dep in config["dependencies"]
                   if dep.get("trigger_after") == failed["id"] and dep.get("trigger_only_on_failure")]
    assert bar_places(config, follow_up) == [place]


def test_the_bars_place_has_the_bars_height_before_and_after_it_shows():
    """Review CZ3: the place grew from 41 to 70 px while the bar showed, moving everything under it twice per run.
    Its height is set for the place itself, not only while a bar is in it (``:has``)."""
    from lowdim_sd.ui.page import CSS

    rules = [rule.split("{") for rule in CSS.split("}") if "{" in rule]
    heights = [body for selectors, body in rules
               if "min-height" in body and any(selector.strip() == "#job-bar" for selector in selectors.split(","))]
    assert heights, CSS
