"""What the page's progress bar says while a run draws pictures (review BL5): it counts pictures, says so, and goes
one way over all of the preview's rows, instead of "6/6 steps" twice for two grids of six pictures."""

from __future__ import annotations

import pytest
import torch

from lowdim_sd import runs

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

TWO_ROWS = ("1", "te=0@start=0.5")  # TinyFaces' preview draws two rows, as these do


@pytest.fixture(scope="module")
def heard_preview(tmp_path_factory, tiny_sd) -> tuple[list[tuple[str, int, int]], int]:
    """What a listener heard of a tiny personalization's preview of two rows, and how many pictures it drew."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    from lowdim_sd.personalize import PersonalizeJob, personalize

    folder = tmp_path_factory.mktemp("units")
    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, folder,
                       "face")[0]
    heard: list[tuple[str, int, int]] = []
    job = PersonalizeJob(model=str(tiny_sd), image=face, out=folder / "run", steps=1, crop=False, preview_steps=1,
                         preview_draws=TWO_ROWS)
    with runs.listen(lambda *event: heard.append(event)):
        result = personalize(job, progress=False)
    preview = heard[[label for label, _, _ in heard].index("preview"):]
    return preview, len(result.gallery) - len(TWO_ROWS)  # the gallery: a reference, then the pictures, per row


def test_the_previews_rows_are_one_bar_that_never_goes_back(heard_preview):
    from lowdim_sd.generate import PICTURES_BAR

    preview, pictures = heard_preview
    drawn = [(done, total) for label, done, total in preview if label == PICTURES_BAR]
    done = [count for count, _ in drawn]
    assert len(drawn) >= len(TWO_ROWS) and done == sorted(set(done))  # each row's pictures on: never back to 1
    assert done[-1] == pictures and {total for _, total in drawn} == {pictures}  # out of every row's pictures


def test_the_page_labels_pictures_as_pictures_and_training_steps_as_steps(heard_preview):
    from gradio_bar import Bar  # tests/sd, on the path as pytest puts it

    from lowdim_sd.generate import PICTURES_BAR
    from lowdim_sd.ui.page_parts import progress_listener

    bar = Bar()
    hear = progress_listener(bar)  # type: ignore[arg-type]  # what Gradio's gr.Progress is called with
    hear("fast finetune", 0, 1)
    hear("training", 3, 40)
    for event in heard_preview[0]:
        hear(*event)
    assert bar.words(1) == "fast finetune: training 3/40 steps"
    pictures = heard_preview[1]
    assert bar.words() == f"preview: {PICTURES_BAR} {pictures}/{pictures} pictures"
    drawn = [bar.words(call) for call in range(3, len(bar.calls))]
    assert all(words.endswith(" pictures") for words in drawn if words.startswith(f"preview: {PICTURES_BAR} "))


def test_a_count_over_a_thousand_is_shown_exactly():
    """Finetune steps up to 2000 (review BU3): the bar said '13/2k steps', Gradio's short form of a count."""
    from gradio_bar import Bar  # tests/sd, on the path as pytest puts it

    from lowdim_sd.ui.page_parts import progress_listener

    bar = Bar()
    hear = progress_listener(bar)  # type: ignore[arg-type]
    hear("fast finetune", 0, 1)
    hear("training", 13, 2000)
    assert bar.words() == "fast finetune: training 13/2000 steps"
    assert bar.calls[-1][0] == pytest.approx(13 / 2000)  # the bar itself still moves


def test_generate_takes_no_public_bar_argument():
    """The preview's shared bar is its own business (review BR4): ``generate`` lists no ``bar`` a caller could pass
    an impossible count to, which would show as '7/2' or fail after the pictures are drawn."""
    import inspect

    from lowdim_sd.generate import generate

    assert [name for name in inspect.signature(generate).parameters if not name.startswith("_")] == [
        "model", "config", "tokens", "progress", "keep"]
