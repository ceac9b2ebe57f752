"""``lowdim ui``'s server as clients other than the page reach it: values Gradio itself checks (a file control's),
the uploads it keeps, and its start line with ``--share``.

A file control sent a path string, one file where a list goes, or too few values is one line naming the
control, with no traceback on the server's terminal; uploads are capped and removed when the server stops; and
``--share`` without a public link says so in lowdim's own line.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from local_port import free_port  # tests/sd, on the path as pytest puts it
from ui_requests import refusal, served_page  # tests/sd, on the path as pytest puts it

from lowdim_sd.ui.studio import Studio, StudioConfig

# Gradio's queue calls pandas in ways pandas 3 deprecates; a user never sees it (DeprecationWarning), pytest does.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
gradio_client = pytest.importorskip("gradio_client")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The TinyFaces page served in this process as ``lowdim ui`` serves it: a client of it, and its address."""
    with served_page(tmp_path_factory.mktemp("ui") / "runs", show_error=True) as (url, _):
        yield gradio_client.Client(url, verbose=False), url


def photo() -> dict:
    return gradio_client.handle_file(str(FACE))


@pytest.mark.parametrize(("sent", "api_name", "line"), [
    (("/etc/passwd", "tinyfaces"), "/show_photo",
     "Face photo must be a file uploaded to this page (gradio_client: handle_file(PATH)), got '/etc/passwd'"),
    ((photo(), photo(), "a [V]", "sks", "tinyfaces-identity"), "/run",
     "Generated pictures must be a list of files uploaded to this page, got one file"),
    (([photo()], "/etc/passwd", "a [V]", "sks", "tinyfaces-identity"), "/run",
     "Reference photo must be a file uploaded to this page (gradio_client: handle_file(PATH)), got '/etc/passwd'"),
])
def test_a_file_control_sent_no_uploaded_file_is_one_line_naming_it(served, sent, api_name, line, capfd):
    client, _ = served
    assert refusal(client, *sent, api_name=api_name) == line
    assert "Traceback" not in "".join(capfd.readouterr())


def test_the_adapter_file_sent_a_path_string_is_one_line_naming_it(served, capfd):
    client, _ = served
    said = refusal(client, "/etc/passwd", "tinyfaces", api_name="/use_adapter")
    assert said == ("Adapter file must be a file uploaded to this page (gradio_client: handle_file(PATH)), got "
                    "'/etc/passwd'")
    assert "Traceback" not in "".join(capfd.readouterr())


@pytest.mark.parametrize("count", ["single", "multiple"])
def test_a_file_controls_api_is_gradios_own(count):
    """What a client reads of a file control (its schema: a FileData, or a list of them) is unchanged."""
    from lowdim_sd.ui.page_parts import File

    assert File("Face photo", file_count=count).api_info() == gr.File(file_count=count).api_info()


def call(url: str, api_name: str, data: list):
    """A request through Gradio's plain HTTP API: what its event stream said last (an error: {"error": LINE})."""
    posted = urllib.request.Request(f"{url}gradio_api/call/{api_name}", json.dumps({"data": data}).encode(),
                                    {"Content-Type": "application/json"})
    with urllib.request.urlopen(posted, timeout=30) as answer:
        event = json.load(answer)["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event}", timeout=30) as stream:
        said = [line for line in stream.read().decode().splitlines() if line.startswith("data:")]
    return json.loads(said[-1][len("data:"):])


def test_too_few_values_is_one_line_naming_what_is_missing(served, capfd):
    _, url = served
    assert call(url, "show_photo", ["tinyfaces"])["error"] == ("show_photo takes 2 values (Face photo, Model), got "
                                                               "1: Model is missing")
    assert "Traceback" not in "".join(capfd.readouterr())


def serve(tmp_path: Path, ready, share: bool = False) -> tuple[int, Path]:
    """``lowdim ui`` in this process, as the command serves, until ``ready(page)`` returns; its port and --out."""
    from lowdim_cli.ui_command import serve

    port, out = free_port(), tmp_path / "runs"
    serve("127.0.0.1", port, "tinyfaces", out, share, None, "auto", "auto", ready=ready)
    return port, out


def unique_photo(tmp_path: Path) -> Path:
    """A photo no other test uploads: Gradio keeps uploads by their content."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng().integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "unique.png")
    return tmp_path / "unique.png"


def test_uploads_and_copies_of_shown_runs_go_with_the_server_and_the_runs_stay(tmp_path, tiny_sd):
    from lowdim_sd.ui.studio import RunSettings

    face = unique_photo(tmp_path)
    record = Studio(StudioConfig(out=tmp_path / "runs")).personalize(
        face, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))
    made = []

    def use(page) -> None:
        client = gradio_client.Client(f"http://127.0.0.1:{page.server_port}/", verbose=False)
        client.predict(gradio_client.handle_file(str(face)), "tinyfaces", api_name="/show_photo")
        client.predict(record.name, api_name="/open_run")
        made.extend(Path(path) for files in page.temp_file_sets for path in files)

    serve(tmp_path, use)
    assert any(path.name == "unique.png" for path in made) and any(path.suffix == ".safetensors" for path in made)
    assert [path for path in made if path.exists() or path.parent.exists()] == []
    assert all(path.is_file() for path in record.downloads.values())  # a copy went, never the run's own file


def test_an_upload_over_the_cap_is_refused_before_it_is_kept(tmp_path, monkeypatch):
    from lowdim_cli import ui_command
    from lowdim_sd.ui.photos import MAX_PIXELS

    assert ui_command.MAX_UPLOAD_BYTES >= 4 * MAX_PIXELS  # any 50 MP photo: 8-bit RGBA, stored uncompressed
    monkeypatch.setattr(ui_command, "MAX_UPLOAD_BYTES", 1000)  # the same check, at a size a test can send
    codes = {}

    def upload(page) -> None:
        for size in (999, 1001):
            body = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.png\"\r\n"
                    b"Content-Type: image/png\r\n\r\n" + b"\0" * size + b"\r\n--b--\r\n")
            sent = urllib.request.Request(f"http://127.0.0.1:{page.server_port}/gradio_api/upload", body,
                                          {"Content-Type": "multipart/form-data; boundary=b"})
            try:
                with urllib.request.urlopen(sent, timeout=30) as answer:
                    codes[size] = answer.status
            except urllib.error.HTTPError as error:
                codes[size] = error.code

    serve(tmp_path, upload)
    assert codes == {999: 200, 1001: 413}


def test_share_without_a_public_link_is_one_lowdim_line(tmp_path, monkeypatch, capsys):
    import gradio.networking

    def no_tunnel(**kwargs):
        raise OSError("no internet")

    monkeypatch.setattr(gradio.networking, "setup_tunnel", no_tunnel)
    port, out = serve(tmp_path, lambda page: None, share=True)
    [line] = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("lowdim ui: --share made no public link (Gradio: Could not create share link")
    assert line.endswith(f"; serving on http://127.0.0.1:{port} only (Ctrl-C stops it); runs are kept in {out}")


def test_the_public_link_is_in_lowdims_start_line(tmp_path, monkeypatch, capsys):
    import gradio.networking

    monkeypatch.setattr(gradio.networking, "setup_tunnel", lambda **kwargs: "https://abc123.gradio.live")
    port, out = serve(tmp_path, lambda page: None, share=True)
    assert capsys.readouterr().out.strip().splitlines() == [
        f"lowdim ui: serving on http://127.0.0.1:{port} and https://abc123.gradio.live (Ctrl-C stops it); runs are "
        f"kept in {out}"]


@pytest.mark.parametrize("option", ["host", "share"])
def test_the_help_of_host_and_share_says_who_sees_the_runs(option):
    import typing

    from lowdim_cli.ui_command import ui

    [declared] = typing.get_type_hints(ui, include_extras=True)[option].__metadata__
    assert "anyone reaching the page sees every run in --out, photos included" in declared.help
