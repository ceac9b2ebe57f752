"""``lowdim ui``'s handlers given what only a client other than the page sends (``gradio_client``, Gradio's API):
an empty Model box, text in a number field, a fraction, "no" for a checkbox, null for a prompt.

Each is one line on the page naming the control, in the page's terms, with no traceback on the terminal: the
page's handlers are called directly (as Gradio calls them once its own preprocessing, which the page turns off
for its number controls, has passed the value on as sent).
"""

from __future__ import annotations

import pytest
from ui_requests import handler, refused  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd import defaults
from lowdim_sd.ui.studio import RunSettings, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

EMPTY_MODEL = "the Model box is empty: pick an installed model or type a path"


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd):
    """(studio, its page, one finished run): the run is read, never changed, by the tests that share it."""
    from lowdim_sd.ui.page import build_page

    folder = tmp_path_factory.mktemp("client")
    studio = Studio(StudioConfig(model=str(tiny_sd), out=folder / "ui"))
    record = studio.personalize(face_photo(folder), RunSettings(model=str(tiny_sd), steps=1, crop=False,
                                                                preview_steps=1))
    return studio, build_page(studio), record


def face_photo(folder):
    import torch
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    return save_images(image, folder, "face")[0]


def component(page, elem_id: str):
    [found] = [block for block in page.blocks.values() if getattr(block, "elem_id", None) == elem_id]
    return found




def personalize_line(page, tiny_sd, face, **changed) -> str:
    """What Personalize says to the values a client sent, the page's own values where not ``changed``."""
    sent = {"path": str(face), "chosen_model": str(tiny_sd), "hyper": True, "step_count": 2, "lora_rank": 4,
            "run_seed": 0, "sample_steps": 1, "index": 0, **changed}
    return refused(handler(page, "personalize"), *sent.values(), request=None)


def draw_line(page, what: dict, **changed) -> str:
    sent = {"what": what, "chosen_model": changed.pop("model", "tinyfaces"), "prompt": "a photo of a [V] face",
            "scale": 1.0, "how": "1", "seed": 0, "steps": 1, "pictures": 1, **changed}
    return refused(handler(page, "draw_more"), *sent.values())


# A1, A2: an empty Model box -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [None, "", "  "])
def test_an_empty_model_box_is_one_line_on_personalize(made, tiny_sd, face, model, capsys):
    studio, page, _ = made
    assert personalize_line(page, tiny_sd, face, chosen_model=model) == EMPTY_MODEL
    assert not list(studio.config.out.glob(".*")) and "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("model", [None, "", "  "])
@pytest.mark.parametrize("name", ["show_photo", "show_crop", "show_model"])
def test_an_empty_model_box_is_the_crops_note_not_a_face_missing(made, face, model, name, capsys):
    _, page, _ = made
    args = (str(face), model) if name == "show_photo" else (str(face), model, 0)
    image, note, _ = handler(page, name)(*args)
    assert image is None and note == f"**{EMPTY_MODEL}**"  # as an unknown model's line is shown there
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("model", [None, "", " "])
def test_an_empty_model_box_is_one_line_when_drawing_a_dropped_adapter(made, model, capsys):
    _, page, record = made
    assert draw_line(page, {"adapter": str(record.adapter)}, model=model) == EMPTY_MODEL
    assert "Traceback" not in capsys.readouterr().err


def test_a_run_is_drawn_on_its_own_model_whatever_the_model_box_holds(made):
    _, page, record = made
    drawn, *_ = handler(page, "draw_more")({"run": record.name}, None, "a [V] face", 1.0, "1", 0, 1, 1)
    assert len(drawn) == 1
    _, prompt, line = handler(page, "use_adapter")(str(record.adapter), None)  # the box is read when drawing
    assert prompt.startswith("a [V] face") and "on the model in the Model box" in line


def test_the_command_line_says_an_empty_model_in_its_own_terms():
    from lowdim_sd.ui.checks import check_model
    from lowdim_sd.ui.page_parts import page_line

    with pytest.raises(LowdimError) as caught:
        check_model("")  # Path("") is the current folder, which exists: once taken as a model
    assert str(caught.value).startswith("--model is empty") and page_line(str(caught.value)) == EMPTY_MODEL
    with pytest.raises(LowdimError, match=r"^model 5 is neither an installed model"):
        check_model(5)


# A3, A4: number fields: text and fractions ----------------------------------------------------------------------


@pytest.mark.parametrize("elem_id", ["steps", "seed", "draw-seed"])
def test_the_number_fields_pass_a_value_as_sent_to_the_studios_check(made, elem_id):
    number = component(made[1], elem_id)
    assert number.preprocess("abc") == "abc" and number.preprocess(2.5) == 2.5  # not Gradio's traceback, nor 2


@pytest.mark.parametrize(("field", "sent", "line"), [
    ("step_count", "abc", "Finetune steps must be a whole number, got abc"),
    ("run_seed", "abc", "Run seed must be a whole number, got abc"),
    ("lora_rank", "x", "Rank must be a whole number, got x"),
    ("step_count", 2.5, "Finetune steps must be a whole number, got 2.5"),
    ("lora_rank", 2.5, "Rank must be a whole number, got 2.5"),
    ("run_seed", 1.5, "Run seed must be a whole number, got 1.5"),
    ("sample_steps", 1.5, "Gallery denoising steps must be a whole number, got 1.5"),
    ("run_seed", float("nan"), "Run seed must be a whole number, got nan"),
    ("lora_rank", True, "Rank must be a whole number, got True"),
    ("run_seed", None, "Run seed is empty: type a whole number"),
])
def test_text_or_a_fraction_in_a_number_is_one_line_naming_it(made, tiny_sd, face, field, sent, line, capsys):
    studio, page, _ = made
    assert personalize_line(page, tiny_sd, face, **{field: sent}) == line
    assert not list(studio.config.out.glob(".*")) and "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(("field", "sent", "line"), [
    ("seed", "x", "Picture seed must be a whole number, got x"),
    ("pictures", 2.7, "Pictures must be a whole number, got 2.7"),
    ("steps", 1.5, "Draw's denoising steps must be a whole number, got 1.5"),
])
def test_text_or_a_fraction_in_draws_numbers_is_one_line_naming_it(made, field, sent, line):
    _, page, record = made
    assert draw_line(page, {"run": record.name}, **{field: sent}) == line


@pytest.fixture
def asked(made, monkeypatch) -> list[RunSettings]:
    """The settings Personalize passes the studio (what its run.json keeps), which then runs nothing."""
    settings = []

    def kept(path, run_settings, *rest, **kwargs):
        settings.append(run_settings)
        raise LowdimError("kept, not run")

    monkeypatch.setattr(made[0], "personalize", kept)
    return settings


def personalize_with(made, tiny_sd, face, *sent) -> None:
    with pytest.raises(gr.Error, match="kept, not run"):
        handler(made[1], "personalize")(str(face), str(tiny_sd), *sent, request=None)


def test_whole_numbers_however_sent_are_taken_as_they_are(made, tiny_sd, face, asked):
    personalize_with(made, tiny_sd, face, True, 2.0, 4.0, "3", 1.0, 0.0)  # as a JSON client may send them
    numbers = [getattr(asked[0], key) for key in ("steps", "rank", "seed", "preview_steps", "face_index")]
    assert numbers == [2, 4, 3, 1, None] and all(type(n) is int for n in numbers[:4])


@pytest.mark.parametrize("sent", [None, "", " "])
def test_an_emptied_finetune_steps_is_the_recipe(made, tiny_sd, face, sent, asked):
    personalize_with(made, tiny_sd, face, True, sent, 4, 0, 1, 0)
    assert asked[0].steps is None


# A5: the checkbox, the adapter's scale, the prompt --------------------------------------------------------------


@pytest.mark.parametrize("sent", ["no", "false", 0, 1, [True]])
def test_a_checkbox_that_is_sent_no_bool_is_one_line(made, tiny_sd, face, sent):
    studio, page, _ = made
    line = f"Start from the hypernetwork's prediction is a checkbox: send true or false, got {sent!r}"
    assert personalize_line(page, tiny_sd, face, hyper=sent) == line
    assert refused(handler(page, "recipe_steps"), sent) == line
    assert not list(studio.config.out.glob(".*"))


def test_a_checkbox_sent_null_is_a_cleared_box(made, tiny_sd, face, asked):
    from lowdim_sd.ui.page import recipe_steps

    assert recipe_steps(None) == defaults.SCRATCH_STEPS == recipe_steps(False)
    personalize_with(made, tiny_sd, face, None, 1, 4, 0, 1, 0)
    personalize_with(made, tiny_sd, face, True, 1, 4, 0, 1, 0)
    assert [settings.use_hypernet for settings in asked] == [False, True]  # a bool in run.json, never null


@pytest.mark.parametrize(("sent", "line"), [("x", "Adapter scale must be a number, got x"),
                                            (None, "Adapter scale must be a number, got None"),
                                            (True, "Adapter scale must be a number, got True")])
def test_an_adapter_scale_that_is_no_number_is_one_line(made, sent, line, capsys):
    _, page, record = made
    assert draw_line(page, {"run": record.name}, scale=sent) == line
    assert "Traceback" not in capsys.readouterr().err


def test_a_prompt_sent_null_is_an_empty_prompt_box(made, capsys):
    _, page, record = made
    line = draw_line(page, {"run": record.name}, prompt=None)
    assert line.startswith("the prompt has no [V]: write [V] where the subject goes")
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(LowdimError, match=r"the prompt has no \[V\]"):
        made[0].draw(record.name, None)  # the studio's own check, for a caller in Python


@pytest.mark.parametrize(("sent", "number"), [(2, 2), (2.0, 2), ("2", 2), (" 7 ", 7), (-1.0, -1), (2**64, 2**64)])
def test_a_whole_number_is_read_however_a_client_writes_it(sent, number):
    from lowdim_sd.ui.checks import whole_number

    assert whole_number(sent, "Rank") == number and type(whole_number(sent, "Rank")) is int
