"""The ui's job plumbing where the rest of review DU's mutation audit found nothing pinning it (task FGC).

Each test fails on one of the audit's mutants (named in its comment) and passes on the code as it is."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from lowdim_sd import stopping
from lowdim_sd.ui.studio import RunSettings, Stopped, Studio, StudioConfig

pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

# Gradio's queue calls pandas in ways pandas 3 deprecates; a user never sees it (DeprecationWarning), pytest does.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd):
    """(studio, one finished run of the tiny model), its model cached for drawing."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    folder = tmp_path_factory.mktemp("survivors2")
    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, folder,
                       "face")[0]
    studio = Studio(StudioConfig(model=str(tiny_sd), out=folder / "ui"))
    record = studio.personalize(face, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))
    studio.draw(record.name, "a [V] face", steps=1, count=1)  # its model loaded and cached
    yield studio, record
    stopping.withdraw()  # a stop a failing test left asked is not the next test's


# draw-not-heard: Draw's progress reached the page with no stop check, so only the UNet's steps stopped it
def test_a_stop_asked_while_the_last_pictures_are_decoded_stops_the_draw(made, monkeypatch):
    """The pictures' decoding comes after the last denoising step (seconds for four SD1.5 pictures on a CPU): a
    Stop pressed then stops the draw at its next step, the pictures' count, as the page's line says it does."""
    studio, record = made
    vae = studio._drawer._cached[1].pipe.vae  # private: the one way to press Stop during the decoding
    decode = vae.decode

    def decode_as_stop_is_pressed(*args, **kwargs):
        studio.stop(wait=0)
        return decode(*args, **kwargs)

    monkeypatch.setattr(vae, "decode", decode_as_stop_is_pressed)
    with pytest.raises(Stopped, match="the drawing was stopped at its next step"):
        studio.draw(record.name, "a [V] face", steps=1, count=1)
    monkeypatch.undo()
    assert len(studio.draw(record.name, "a [V] face", steps=1, count=1)) == 1  # the next draw runs whole


def delivering_late(page, seconds: float) -> None:
    """Each job's last message reaches its client's event stream ``seconds`` after the job has ended: a busy
    event loop, or a slow network. Gradio's queue has let go of the job by then; the message is still to be sent."""
    import asyncio

    from gradio.server_messages import ProcessCompletedMessage

    queue = page._queue  # private: the one place a message is handed to a client's stream
    send = queue.send_message

    def send_late(event, message) -> None:
        if isinstance(message, ProcessCompletedMessage):
            asyncio.get_running_loop().call_later(seconds, send, event, message)
        else:
            send(event, message)

    queue.send_message = send_late


# undelivered-active-only: the closing server waited only while a job ran, not for a finished one's last message
def test_ctrl_c_waits_for_the_stopped_jobs_line_to_reach_its_client_after_the_job_ended(tmp_path, tiny_sd):
    """Not Gradio's "Server stopped unexpectedly.": the stopped draw has ended, and its line is still on its way."""
    gradio_client = pytest.importorskip("gradio_client")
    from local_port import free_port

    from lowdim_cli.ui_command import close_after_a_stop
    from lowdim_sd.ui.page import build_page

    studio = Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))
    record = studio.personalize(FACE, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))
    page, port = build_page(studio), free_port()
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        delivering_late(page, 1.0)
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(record.name, api_name="/open_run")
        job = client.submit("tinyfaces", "a [V] face", 1.0, "1", 0, 100, 16, api_name="/draw_more")
        while studio._running is None:
            assert not job.done(), job.result()
            time.sleep(0.05)
        with pytest.raises(KeyboardInterrupt, match="the drawing in flight was stopped"):
            close_after_a_stop(page, studio)
    finally:
        page.close(verbose=False)
    try:
        _, stages = job.result(timeout=30)
    except Exception as error:  # noqa: BLE001 - gradio_client's own, for "Server stopped unexpectedly."
        pytest.fail(f"the client heard no line of the page's, but {error!r}")
    assert stages.startswith("stopped: the drawing was stopped at its next step, as the server is closing")
