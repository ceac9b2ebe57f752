"""``lowdim ui``'s page without a browser: what its controls offer and say, and how its errors read.

The page is built (not served) and its components found by ``elem_id``; its handlers' errors are checked as
the page would show them (``gr.Error``'s message).
"""

from __future__ import annotations

import pytest
import torch

from lowdim.errors import LowdimError
from lowdim_sd import defaults
from lowdim_sd.ui.run_folders import list_runs
from lowdim_sd.ui.studio import RunSettings, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")


@pytest.fixture
def studio(tmp_path, tiny_sd) -> Studio:
    return Studio(StudioConfig(model=str(tiny_sd), out=tmp_path / "ui"))


@pytest.fixture
def page(studio):
    from lowdim_sd.ui.page import build_page

    return build_page(studio)


def component(page, elem_id: str):
    [found] = [block for block in page.blocks.values() if getattr(block, "elem_id", None) == elem_id]
    return found


def handler(page, name: str):
    """The page's event handler named ``name`` (as Gradio's API names it) and its inputs' elem_ids."""
    [found] = [fn for fn in page.fns.values() if fn.name == name]
    return found.fn, [block.elem_id for block in found.inputs]


def test_the_model_list_names_each_installed_model_once(page):
    from lowdim.registry import get_registry

    choices = [value for _, value in component(page, "model").choices]
    backends = get_registry().backends
    assert len({id(backends[name].value) for name in choices}) == len(choices) == len(
        {id(entry.value) for entry in backends.values()})


@pytest.mark.parametrize(("field", "value", "line"), [
    ("steps", 0, "Finetune steps must be 1 to 2000, got 0"),
    ("steps", -5, "Finetune steps must be 1 to 2000, got -5"),
    ("rank", 0, "Rank must be 1 to 32, got 0"),
    ("preview_steps", 0, "Gallery denoising steps must be 1 to 100, got 0"),
    ("seed", -1, "Run seed must be 0 to 9223372036854775807, got -1"),
])
def test_a_number_out_of_range_is_one_line_naming_its_control(page, studio, tiny_sd, field, value, line, capsys):
    personalize, inputs = handler(page, "personalize")
    typed = {"photo": str(_face(studio.config.out.parent)), "model": str(tiny_sd), "use-hyper": True, "steps": 2,
             "rank": 4, "seed": 0, "preview-steps": 1, "face": 0, field.replace("_", "-"): value}
    with pytest.raises(gr.Error) as caught:
        personalize(*(typed[elem_id] for elem_id in inputs), request=None)
    assert caught.value.message == line
    assert list(studio.config.out.iterdir()) == [] and "Traceback" not in capsys.readouterr().err
    for slider in ("rank", "preview-steps", "draw-steps", "draw-count", "draw-scale"):  # no Gradio check first
        assert component(page, slider).preprocess(0) == 0


def test_errors_name_an_upload_by_its_own_name_not_gradios_folder(tmp_path):
    from gradio.utils import get_upload_folder

    from lowdim_sd.ui.page_parts import on_page
    from lowdim_sd.ui.photos import crop_preview

    upload = tmp_path / "gradio" / "4555be98aa" / "notes.txt"
    upload.parent.mkdir(parents=True)
    upload.write_text("not a picture")

    @on_page
    def fails():
        raise LowdimError(f"file {get_upload_folder()}/4555be98aa/notes.txt is not a readable image")

    with pytest.raises(gr.Error) as caught:
        fails()
    assert caught.value.message == "file notes.txt is not a readable image"
    with pytest.raises(LowdimError, match=r"^notes.txt is not an image"):
        crop_preview(upload, "tinyfaces")


def test_advice_to_pass_a_flag_is_said_with_the_pages_controls(studio, tmp_path):
    from lowdim_sd.ui.page_parts import on_page

    photo = tmp_path / "me.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n")  # a picture's name, typed in the Model box
    run = on_page(lambda: studio.personalize(_face(tmp_path), RunSettings(model=str(photo), steps=1, crop=False)))
    with pytest.raises(gr.Error) as caught:
        run()
    assert "Model box takes" in caught.value.message and "--" not in caught.value.message


def _face(folder):
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    return save_images(torch.rand(1, 3, 32, 32) * 2 - 1, folder, "face")[0]


def test_help_says_what_the_steps_seeds_and_preview_cost(page):
    from lowdim_sd.ui.page import recipe_steps

    hyper, steps = component(page, "use-hyper"), component(page, "steps")
    assert recipe_steps(False) == defaults.SCRATCH_STEPS and recipe_steps(True) == defaults.FINETUNE_STEPS
    assert f"becomes {recipe_steps(False)}" in hyper.info  # the box sets the field it speaks of
    [toggle] = [fn for fn in page.fns.values() if fn.fn is recipe_steps]
    assert [block.elem_id for block in toggle.outputs] == ["steps"]
    assert steps.info.startswith("empty: ") and steps.minimum is None and "2000" in steps.info
    seeds = {component(page, "seed").label, component(page, "draw-seed").label}
    assert len(seeds) == 2 and all(component(page, name).info for name in ("rank", "seed", "preview-steps"))
    assert "CPU" in component(page, "preview-steps").info


def test_draw_has_its_own_steps_and_count_and_a_stop_button_frees_the_page(page):
    _, inputs = handler(page, "draw_more")
    assert {"draw-steps", "draw-count", "draw-seed"} <= set(inputs) and "preview-steps" not in inputs
    assert component(page, "stop").value == "Stop"


def test_the_page_reads_top_down_in_the_order_of_use(page):
    """A run comes from a photo and Personalize, or from Earlier runs: both above the gallery, downloads and
    Draw that either fills (an opened run once showed only far above the list one opened it from)."""
    from lowdim_sd.ui.page import INTRO

    names = {block._id: getattr(block, "elem_id", None) for block in page.blocks.values()}
    order = []

    def walk(node: dict) -> None:
        order.append(names.get(node["id"]))
        for child in node.get("children", []):
            walk(child)

    walk(page.get_config_file()["layout"])
    used = ["photo", "crop", "personalize", "stages", "earlier", "open", "gallery", "downloads", "draw-prompt",
            "draw", "drawn"]
    assert sorted(used, key=order.index) == used
    assert INTRO.index("Personalize") < INTRO.index("earlier run") < INTRO.index("Draw")


def test_the_crop_preview_refuses_a_photo_too_small_to_train_with_trainings_line(studio, tiny_sd, tmp_path):
    from PIL import Image

    from lowdim_sd.ui.photos import crop_preview, training_side

    side = training_side(str(tiny_sd))
    assert side == 16  # the tiny pipeline's: 8 latent pixels, a VAE of two blocks
    small = tmp_path / "small.png"
    Image.new("RGB", (side // 2 - 1, side // 2 - 1), "blue").save(small)
    with pytest.raises(LowdimError) as trained:
        studio.personalize(small, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))
    with pytest.raises(LowdimError) as previewed:
        crop_preview(small, str(tiny_sd), crop=False)
    assert str(previewed.value) == str(trained.value) and "too small" in str(trained.value)
    Image.new("RGB", (side // 2, side // 2), "blue").save(small)
    assert crop_preview(small, str(tiny_sd), crop=False).faces == 0  # what training takes, the preview shows


def test_a_finished_run_shows_its_whole_folder_and_downloads_named_after_it(studio, tiny_sd, tmp_path):
    from lowdim_sd.ui.page import shown

    face = _face(tmp_path)
    one = studio.personalize(face, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))
    two = studio.personalize(face, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1, seed=1))
    _, files, table, *_ = shown(one)
    assert f"<code>{one.folder.resolve()}</code>" in table
    names = [path.rsplit("/", 1)[1] for path in files]
    assert all(name.startswith(one.name + ".") for name in names) and any(name.endswith(".png") for name in names)
    assert not set(names) & {path.name for path in two.downloads.values()}  # no clash in a Downloads folder
    assert one.adapter.read_bytes() == (one.folder / "adapter.safetensors").read_bytes()
    assert one.adapter.read_bytes() != two.adapter.read_bytes()  # the Run seed makes the run (review CF1)
    # Earlier runs is refilled with every run of --out, not only at a page load (review CF5)
    assert shown(two)[3]["choices"] == list_runs(studio.config.out) and len(list_runs(studio.config.out)) == 2
    two.adapter.write_bytes(b"cut short")
    # a damaged adapter still lets its run open
    assert shown(two)[2].startswith(f"<p><strong>Run <code>{two.name}</code></strong>")


def test_scoring_reports_its_progress(studio):
    from pathlib import Path

    face = Path(__file__).resolve().parents[2] / "examples" / "face.png"
    heard = []
    studio.evaluate([face], face, "a [V] face", metrics="tinyfaces-image", listener=lambda *e: heard.append(e))
    assert heard[0] == ("scoring", 0, 1) and heard[-1][1] == heard[-1][2] > 0


def test_the_evaluate_tab_starts_with_the_metrics_that_read_the_models_pictures(tmp_path):
    from lowdim_sd.eval.job import TINYFACES_METRICS
    from lowdim_sd.eval.paper_metrics import PAPER_METRICS
    from lowdim_sd.ui.page import build_page

    for model, expected in (("tinyfaces", TINYFACES_METRICS), ("sd15", PAPER_METRICS)):
        shown = component(build_page(Studio(StudioConfig(model=model, out=tmp_path / model))), "metrics")
        assert shown.value == ",".join(expected) and "tinyfaces-style" in shown.info
