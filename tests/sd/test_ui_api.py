"""``lowdim ui``'s page called as a client other than the browser calls it (``gradio_client``, Gradio's API).

Such a client may send a value the page's lists (*Face*, *Earlier runs*) never offered. Each is refused in
one line naming the control and the value, as the page's other input checks are, with no traceback on the
server's terminal; Gradio's own check of a list printed one and named no control.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ui_requests import refusal, served_page  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd.ui.studio import RunSettings, Studio, StudioConfig

# Gradio's queue calls pandas in ways pandas 3 deprecates; a user never sees it (DeprecationWarning), pytest does.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
gradio_client = pytest.importorskip("gradio_client")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The TinyFaces page, served in this process as ``lowdim ui`` serves it; a client of it, and its studio."""
    with served_page(tmp_path_factory.mktemp("ui") / "runs") as (url, studio):
        yield gradio_client.Client(url, verbose=False), studio


def photo() -> dict:
    return gradio_client.handle_file(str(FACE))


def test_a_run_the_list_never_offered_is_one_line_naming_it(served, capfd):
    client, studio = served
    line = refusal(client, "no-such-run", api_name="/open_run")
    out = studio.config.out
    assert line == f"Earlier runs has no run 'no-such-run': pick one it lists (the finished runs in {out})"
    assert refusal(client, "../runs", api_name="/open_run").startswith("Earlier runs has no run '../runs'")
    assert "Traceback" not in "".join(capfd.readouterr())


def test_a_run_made_since_the_client_connected_opens(served):
    client, studio = served
    record = studio.personalize(FACE, RunSettings(model="tinyfaces", steps=1, preview_steps=1))
    gallery, *_ = client.predict(record.name, api_name="/open_run")  # not in the list the client was given
    assert len(gallery) == len(record.gallery)


def test_a_face_the_list_never_offered_is_one_line_naming_it(served, capfd):
    client, studio = served
    line = refusal(client, photo(), "tinyfaces", True, 2, 4, 0, 1, 3, api_name="/personalize")
    assert line == ("Face 3 asked for, but no face is cut out of the photo for tinyfaces (it uses the photo as it "
                    "is): leave Face at 0")
    line = refusal(client, photo(), "tinyfaces", "abc", api_name="/show_crop")
    assert line == "Face must be the number of a face found in the photo (0 is the largest), got 'abc'"
    assert not list(studio.config.out.glob(".*"))  # refused before a run started
    assert "Traceback" not in "".join(capfd.readouterr())


def test_a_face_past_the_faces_found_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    pytest.importorskip("dlib", reason="face detection needs the faces extra")
    from lowdim_sd import faces
    from lowdim_sd.ui.photos import crop_preview

    two = [faces.Face(10, 10, 60, 60, 1.0), faces.Face(70, 70, 100, 100, 1.0)]  # what counts is how many
    monkeypatch.setattr(faces, "detect_faces", lambda image, name="image": two)
    line = re.escape("Face 2 asked for, but face.png has 2 faces: pick 0 to 1 (0 is the largest)")
    with pytest.raises(LowdimError, match=line):
        crop_preview(FACE, "tinyfaces", 2, crop=True)
    studio = Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))
    with pytest.raises(LowdimError, match=line):
        studio.personalize(FACE, RunSettings(model="tinyfaces", face_index=2, crop=True))
    assert list(studio.config.out.iterdir()) == []


@pytest.mark.parametrize("sent, face", [(None, None), ("", None), (2, 2), ("2", 2), (" 2 ", 2), (2.0, 2), (0.0, 0)])
def test_a_face_number_is_read_however_a_client_writes_it(sent, face):
    from lowdim_sd.ui.checks import check_face

    assert check_face(sent) == face


@pytest.mark.parametrize("sent", [2.5, -1, "two", True, float("nan")])
def test_a_face_that_is_no_face_number_is_one_line(sent):
    from lowdim_sd.ui.checks import NotOffered, check_face

    with pytest.raises(NotOffered, match=f"Face must be the number of a face .*got {re.escape(repr(sent))}"):
        check_face(sent)
