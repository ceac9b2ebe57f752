"""``lowdim ui``'s page served, and called as ``gradio_client`` calls it: values only such a client sends reach
the studio's checks through Gradio as sent (its own preprocessing of a number field would print a traceback
and name no control), and each is one line naming the control, with no traceback on the server's terminal.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from local_port import free_port  # tests/sd, on the path as pytest puts it
from ui_requests import refusal  # tests/sd, on the path as pytest puts it

from lowdim_sd.ui.studio import RunSettings, Studio, StudioConfig

# Gradio's queue calls pandas in ways pandas 3 deprecates; a user never sees it (DeprecationWarning), pytest does.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
gradio_client = pytest.importorskip("gradio_client")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"
PROMPT = "a photo of a [V] face"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_sd):
    """A client of the TinyFaces page, served in this process as ``lowdim ui`` serves it, that has opened a
    finished run (made on the tiny pipeline, for speed) for Draw; and the page's studio."""
    from lowdim_sd.ui.page import build_page

    studio = Studio(StudioConfig(model="tinyfaces", out=tmp_path_factory.mktemp("ui") / "runs"))
    record = studio.personalize(FACE, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))
    page = build_page(studio)
    port = free_port()
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(record.name, api_name="/open_run")  # what Draw draws, in this client's session
        yield client, studio
    finally:
        page.close(verbose=False)



def photo() -> dict:
    return gradio_client.handle_file(str(FACE))


@pytest.mark.parametrize(("sent", "line"), [
    ({"model": None}, "the Model box is empty: pick an installed model or type a path"),
    ({"model": ""}, "the Model box is empty: pick an installed model or type a path"),
    ({"steps": "abc"}, "Finetune steps must be a whole number, got abc"),
    ({"seed": "abc"}, "Run seed must be a whole number, got abc"),
    ({"steps": 2.5}, "Finetune steps must be a whole number, got 2.5"),
    ({"seed": 1.5}, "Run seed must be a whole number, got 1.5"),
    ({"rank": 2.5}, "Rank must be a whole number, got 2.5"),
    ({"hyper": "no"}, "Start from the hypernetwork's prediction is a checkbox: send true or false, got 'no'"),
    ({"face": 2}, "Face 2 asked for, but no face is cut out of the photo for tinyfaces (it uses the photo as it "
                  "is): leave Face at 0"),
])
def test_personalize_refuses_what_only_a_client_sends_in_one_line(served, sent, line, capfd):
    client, studio = served
    values = {"model": "tinyfaces", "hyper": True, "steps": 2, "rank": 4, "seed": 0, "preview": 1, "face": 0, **sent}
    assert refusal(client, photo(), *values.values(), api_name="/personalize") == line
    assert not list(studio.config.out.glob(".*"))  # refused before a run started
    assert "Traceback" not in "".join(capfd.readouterr())


@pytest.mark.parametrize(("sent", "line"), [
    ({"seed": "x"}, "Picture seed must be a whole number, got x"),
    ({"count": 2.7}, "Pictures must be a whole number, got 2.7"),
    ({"scale": "x"}, "Adapter scale must be a number, got x"),
    ({"prompt": None}, "the prompt has no [V]: write [V] where the subject goes, e.g. 'a photo of a [V] face'"),
    ({"how": "start=2"}, "'start=2': How to draw's start must be a fraction of the steps in [0, 1), got 2.0"),
])
def test_draw_refuses_what_only_a_client_sends_in_one_line(served, sent, line, capfd):
    client, _ = served
    values = {"model": "tinyfaces", "prompt": PROMPT, "scale": 1.0, "how": "1", "seed": 0, "steps": 2, "count": 1,
              **sent}
    assert refusal(client, *values.values(), api_name="/draw_more") == line
    assert "Traceback" not in "".join(capfd.readouterr())


def test_the_preview_says_an_empty_model_box_and_refuses_a_face_it_does_not_offer(served, capfd):
    client, _ = served
    image, note, _ = client.predict(photo(), None, api_name="/show_photo")
    assert image is None and note == "**the Model box is empty: pick an installed model or type a path**"
    line = refusal(client, photo(), "tinyfaces", 2, api_name="/show_crop")
    assert line.startswith("Face 2 asked for, but no face is cut out of the photo for tinyfaces")
    _, note, face = client.predict(photo(), "tinyfaces", 2, api_name="/show_model")  # the Model changed
    assert "as it is" in note and face["value"] == 0
    assert "Traceback" not in "".join(capfd.readouterr())
