"""``lowdim ui``: what a run's notes say in the stages box, and what the page starts a run with on a model that
ships no hypernetwork (review W1, W2). The handlers are called as Gradio calls them, without a browser."""

from __future__ import annotations

import pytest
import torch

from lowdim_sd import defaults
from lowdim_sd.ui.run_folders import PARTIAL, RunRecord, read_run
from lowdim_sd.ui.studio import RunSettings, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

CLI_WORDS = ("--", "`lowdim", "lowdim generate")


@pytest.fixture
def studio(tmp_path, tiny_sd) -> Studio:
    return Studio(StudioConfig(model=str(tiny_sd), out=tmp_path / "ui"))


def settings(model, **kwargs) -> RunSettings:
    return RunSettings(model=str(model), **{"steps": 2, "crop": False, "preview_steps": 1, **kwargs})


def notes_shown(record: RunRecord) -> list[str]:
    """The **Note:** lines of the stages box, as the page shows them."""
    from page_html import Shown  # tests/sd, on the path as pytest puts it

    from lowdim_sd.ui.page import stage_table

    return Shown(stage_table(record)).notes


def component(page, elem_id: str):
    [found] = [block for block in page.blocks.values() if getattr(block, "elem_id", None) == elem_id]
    return found


# W1: a run's notes in the page's terms ----------------------------------------------------------------------------


def test_a_gallery_drawn_in_smaller_calls_is_said_with_the_draw_section_not_generates_flag(studio, tiny_sd, face,
                                                                                           monkeypatch):
    import lowdim_sd.generate as generate

    drawn_in_chunks = generate._drawn_in_chunks

    def out_of_memory_at_four(jobs, batch, draw):
        def draw_or_fail(chunk):
            if len(chunk) > 2:
                raise torch.OutOfMemoryError("CUDA out of memory")
            return draw(chunk)
        return drawn_in_chunks(jobs, batch, draw_or_fail)

    monkeypatch.setattr(generate, "_drawn_in_chunks", out_of_memory_at_four)
    record = studio.personalize(face, settings(tiny_sd))
    assert record.gallery  # the gallery was drawn, two pictures a call
    assert notes_shown(record) == ["out of memory drawing 4 pictures a call; drawing 2 a call from here (in Draw "
                                   "below, 2 Pictures or fewer fit one call)"]


def test_no_preview_names_the_runs_own_folder_and_draw_not_the_hidden_one_nor_flags(studio, tiny_sd, face,
                                                                                     monkeypatch):
    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr("lowdim_sd.preview.render_preview", no_memory)
    record = studio.personalize(face, settings(tiny_sd))
    [note] = notes_shown(record)
    adapter = record.folder / "adapter.safetensors"
    assert note == (f"no preview: out of GPU memory while drawing it; the adapter is written to {adapter}; "
                    f"draw it with Draw below, with fewer Pictures")
    assert adapter.is_file() and PARTIAL not in note and not any(word in note for word in CLI_WORDS)
    assert notes_shown(read_run(studio.config.out, record.name)) == [note]  # reopened: the same line


def test_a_stored_note_is_shown_in_the_pages_terms(tmp_path):
    """A run.json an earlier version wrote holds the CLI's words: the page says them its own way on Open too."""
    record = RunRecord("old", tmp_path, {}, {"fast finetune": 1.0},
                       notes=["the LoRA on top trains (600 steps unless --steps)"])
    assert notes_shown(record) == ["the LoRA on top trains (600 steps unless Finetune steps is set)"]


# W2: a model that ships no hypernetwork -------------------------------------------------------------------------


def test_a_page_served_with_a_model_without_a_hypernetwork_starts_from_zeros_recipe(studio):
    from lowdim_sd.ui.page import build_page

    page = build_page(studio)
    hyper = component(page, "use-hyper")
    assert (hyper.value, hyper.interactive) == (False, False)
    assert "no hypernetwork" in hyper.info and component(page, "steps").value == defaults.SCRATCH_STEPS


def test_the_page_served_with_tinyfaces_starts_from_its_hypernetwork(tmp_path):
    from lowdim_sd.ui.page import build_page

    page = build_page(Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui")))
    hyper = component(page, "use-hyper")
    assert hyper.value is True and hyper.interactive is not False
    assert component(page, "steps").value == defaults.FINETUNE_STEPS


def test_changing_the_model_sets_the_hypernetwork_box_and_steps_to_what_the_model_offers(tmp_path, tiny_sd):
    from lowdim_sd.ui.page import build_page

    page = build_page(Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui")))
    [wired] = [fn for fn in page.fns.values() if fn.api_name == "model_recipe"]
    assert [block.elem_id for block in wired.outputs][:2] == ["use-hyper", "steps"]
    assert [block.elem_id for block in wired.inputs][:2] == ["model", "use-hyper"]
    recipe = wired.fn

    box, steps, cleared = recipe(str(tiny_sd), True, False)  # the page's defaults, then a model with none
    assert (box["value"], box["interactive"], steps["value"]) == (False, False, defaults.SCRATCH_STEPS)
    assert "no hypernetwork" in box["info"]
    box, steps, cleared = recipe("tinyfaces", False, cleared)  # back: what the page cleared, it ticks again
    assert (box["value"], box["interactive"], steps["value"]) == (True, True, defaults.FINETUNE_STEPS)
    assert cleared is False

    box, steps, cleared = recipe(str(tiny_sd), False, False)  # cleared by the user: their steps stay
    assert (box["value"], box["interactive"]) == (False, False) and "value" not in steps
    box, steps, cleared = recipe("tinyfaces", False, cleared)
    assert box["interactive"] is True and "value" not in box and "value" not in steps

    box, steps, cleared = recipe("tinyfacez", True, False)  # no model: the crop note says so; nothing changes
    assert (box, steps, cleared) == (gr.update(), gr.update(), False)


def test_a_run_asked_to_start_from_a_hypernetwork_the_model_lacks_says_so_and_records_what_ran(studio, tiny_sd,
                                                                                               face):
    record = studio.personalize(face, settings(tiny_sd, use_hypernet=True, steps=2))
    assert record.settings["use_hypernet"] is False
    assert read_run(studio.config.out, record.name).settings["use_hypernet"] is False
    assert notes_shown(record) == [f"{tiny_sd} ships no hypernetwork: the LoRA started from zero and trained 2 "
                                   f"steps (from zero the recipe is {defaults.SCRATCH_STEPS}: empty Finetune steps)"]
    from_zero = studio.personalize(face, settings(tiny_sd, use_hypernet=False))
    assert from_zero.notes == [] and from_zero.settings["use_hypernet"] is False  # asked for: nothing to say


def test_a_run_from_tinyfaces_hypernetwork_records_it(tmp_path, face):
    studio = Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))
    record = studio.personalize(face, settings("tinyfaces", steps=1))
    assert record.settings["use_hypernet"] is True and "hypernetwork" in record.stages and record.notes == []


def test_tinyfaces_own_folder_ships_its_hypernetwork_as_its_name_does(tiny_sd):
    from lowdim.registry import get_registry
    from lowdim_sd.ui.studio_notes import ships_a_hypernet

    entry = get_registry().backends.get("tinyfaces")
    if entry is None:
        pytest.skip("lowdim-tinyfaces is not installed")
    assert ships_a_hypernet("tinyfaces") and ships_a_hypernet(str(entry.value.source))
    assert not ships_a_hypernet(str(tiny_sd))


def test_tinyfaces_own_folder_is_evaluated_with_its_own_metrics_as_its_name_is(tiny_sd):
    from lowdim.registry import get_registry
    from lowdim_sd.eval.job import TINYFACES_METRICS
    from lowdim_sd.eval.paper_metrics import PAPER_METRICS
    from lowdim_sd.ui.scoring import metrics_for

    entry = get_registry().backends.get("tinyfaces")
    if entry is None:
        pytest.skip("lowdim-tinyfaces is not installed")
    assert metrics_for("tinyfaces") == metrics_for(str(entry.value.source)) == TINYFACES_METRICS
    assert metrics_for(str(tiny_sd)) == tuple(PAPER_METRICS) == metrics_for("sd15")
