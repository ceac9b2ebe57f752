"""``lowdim ui``: serve the web page (lowdim_sd.ui) on this machine."""

from __future__ import annotations

import atexit
import contextlib
import errno
import gc
import io
import os
import socket
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from lowdim.errors import LowdimError
from lowdim_cli.shared_options import Device, Dtype, ModelConfig

INSTALL_HINT = "pip install 'lowdim[ui]'"
# An upload's cap: over any photo of the page's 50 MP (photos.MAX_PIXELS: 200 MB as 8-bit RGBA stored with no
# compression at all; a JPEG of 50 MP is some 25 MB) and an adapter file (a rank-32 LoRA of SD1.5's attention is
# some 35 MB in fp32); Gradio refuses a larger one while it arrives, before it is kept.
MAX_UPLOAD_BYTES = 200_000_000
DELIVERY_WAIT = 5.0  # seconds the closing server gives its queue to tell a stopped job's client why


def check_port(host: str, port: int) -> None:
    """Refuse a port that is out of range or that something listens on, in one line, before Gradio starts."""
    if not 1 <= port <= 65535:
        raise LowdimError(f"--port must be 1 to 65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        if os.name != "nt":
            # As Gradio's server binds: the last server's closed connections (TIME_WAIT, a minute after Ctrl-C)
            # do not block it, a listening socket still does. On Windows this option would bind over a listener.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise LowdimError(f"port {port} on {host} is already in use (another lowdim ui?); pass --port "
                                  f"with a free one") from None
            raise LowdimError(f"cannot serve on {host}:{port}: {error.strerror}") from None


def serve(host: str, port: int, model: str, out: Path | str, share: bool, model_config: str | None, device: str,
          dtype: str, ready=None) -> None:
    """Check everything a user can get wrong, then serve until Ctrl-C (``ready(page)``, the tests' hook: called
    once serving, and the server closes when it returns). The Python entry of ``lowdim ui``, e.g. from a
    notebook's cell: ``out`` takes a str as the jobs' path fields do."""
    from lowdim_sd.train_settings import as_path  # here: it loads torch, which `lowdim --help` must not

    out = as_path(out, "serve", "out")  # Gradio's allowed path and the runs' folder are made from a Path
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise LowdimError(f"lowdim ui needs Gradio, which is not installed: {INSTALL_HINT}") from None
    from lowdim_sd.devices import check_training_dtype
    from lowdim_sd.ui.checks import check_model
    from lowdim_sd.ui.page import build_page
    from lowdim_sd.ui.studio import Studio, StudioConfig

    model = check_model(model)
    check_training_dtype(device, dtype)  # every run the page starts trains: refused now, not on the first click
    check_port(host, port)
    from lowdim_sd.ui.upload_folder import private_uploads

    studio = Studio(StudioConfig(model=model, out=out, model_config=model_config, device=device, dtype=dtype))
    no_sweep_at_exit()
    # Its uploads and Gradio's copies of the runs shown go however the server closes; only a second Ctrl-C's
    # quit at once leaves them, to the next start.
    with private_uploads():
        _serve_until_stopped(build_page(studio), studio, host, port, share, out, ready)


def no_sweep_at_exit() -> None:
    """Have the interpreter's exit skip its last garbage collections over what the server loaded (Gradio, torch,
    the page), which took 1 to 15 s after lowdim's "Interrupted" line, the prompt not back yet: Python ends by
    sweeping every object still alive for cycles (``finalize_modules``). ``gc.freeze`` at exit (an atexit
    handler, after the line and every other cleanup) takes those objects out of the sweep; the process's memory
    goes with it anyway. In a notebook, only the kernel's own exit is affected."""
    atexit.unregister(gc.freeze)  # one, however many servers this process served
    atexit.register(gc.freeze)


def _serve_until_stopped(page, studio, host: str, port: int, share: bool, out: Path, ready) -> None:
    try:  # a stop from the launch on closes the server as below, whenever it comes
        gradio_said = launch(page, host, port, share, out)
        typer.echo(start_line(page, gradio_said, host, port, share, out))
        if ready is not None:
            ready(page)  # a caller's checks (the tests'), while it serves
            page.close(verbose=False)
        while page.is_running:
            time.sleep(0.1)
        return  # closed from elsewhere: nothing was interrupted
    except KeyboardInterrupt:
        pass
    close_after_a_stop(page, studio)


def launch(page, host: str, port: int, share: bool, out: Path) -> str:
    """Start serving; returns what Gradio printed, which quiet as it is, is only about the --share link: lowdim's
    start line says it in one line, where Gradio's failure alone is nine."""
    import gradio as gr

    from lowdim_sd.ui.page import CSS

    theme = gr.themes.Soft(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])  # offline
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        page.launch(server_name=host, server_port=port, share=share, inbrowser=False, show_error=True,
                    ssr_mode=False, allowed_paths=[str(out.resolve())], theme=theme, css=CSS, quiet=True,
                    footer_links=[], prevent_thread_lock=True, max_file_size=MAX_UPLOAD_BYTES)
    return printed.getvalue()


def start_line(page, gradio_said: str, host: str, port: int, share: bool, out: Path) -> str:
    """Where the page is served: here, and at its public link with --share, or why --share made none; and which
    runs in ``out`` Earlier runs leaves out, and why (a run.json unreadable here, a run folder or run.json that is a
    symlink, a run file also linked from outside its folder: a backup made with cp -al)."""
    local = f"http://{host}:{port}"
    if share and page.share_url:
        where = f"serving on {local} and {page.share_url}"
    elif share:
        said = [line.strip() for line in gradio_said.splitlines() if "share link" in line]
        why = f"Gradio: {said[0].rstrip('.')}" if said else "Gradio gave no reason"
        where = f"--share made no public link ({why}; a public link needs the internet); serving on {local} only"
    else:
        where = f"serving on {local}"
    from lowdim_sd.ui.run_folders import unreadable_runs_line

    # Earlier runs leaves out a run whose record does not read or is linked: said once here, rather than never.
    unreadable = unreadable_runs_line(out)
    return f"lowdim ui: {where} (Ctrl-C stops it); runs are kept in {out}" + (f"; {unreadable}" if unreadable else "")


def close_after_a_stop(page, studio) -> None:
    """After Ctrl-C or SIGTERM: stop the job in flight at its next step (its hidden folder is removed, as an
    interrupted run's is), close the server, and raise the KeyboardInterrupt that carries the one line
    ``lowdim`` prints before it exits 130. Gradio's own wait would close the server under a running job, whose
    thread then dies with the interpreter (`terminate called without an active exception`, status 134)."""
    from lowdim_sd.ui.run_folders import kept_runs_line

    try:
        stopped = studio.close(waiting=lambda what: typer.echo(
            f"stopping the {what} at its next step (Ctrl-C again quits at once)", err=True))
    except KeyboardInterrupt:
        quit_at_once(studio)
    if stopped:
        delivered(page)
    page.close(verbose=False)  # its "Closing server" line on stdout would come before lowdim's own
    what = f"the {stopped} in flight was stopped" if stopped else "no job was running"
    raise KeyboardInterrupt(f"interrupted: {what}; {kept_runs_line(studio.config.out)}")


def delivered(page, seconds: float = DELIVERY_WAIT) -> None:
    """Wait, at most ``seconds``, until Gradio's queue has sent each client its job's last message: the stopped
    job's own line. Closed at once, the queue would tell that client "Server stopped unexpectedly." instead
    (its event stream replaces whatever it sends after the close). Private ground, read as ``cancel_watch``
    reads it: another Gradio's queue only ends the wait early. A Ctrl-C meanwhile ends it too."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and _undelivered(page):
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass


def _undelivered(page) -> bool:
    """Whether a job is still running in Gradio's queue, or a finished one's message is still to be sent (an
    event leaves its session's pending set once its last message went out)."""
    try:
        queue = page._queue
        return any(queue.active_jobs) or any(queue.pending_event_ids_session.values())
    except Exception:  # noqa: BLE001 - another Gradio: nothing to wait on that this can see
        return False


def quit_at_once(studio) -> None:
    """A second Ctrl-C while the job in flight has not reached its next step (a model still loading): leave
    now. The job's hidden folder stays behind, and the next start removes it."""
    from lowdim_sd.ui.run_folders import kept_runs_line

    typer.echo(f"Interrupted again: quit without waiting for the job in flight; its hidden folder is removed at "
               f"the next start; {kept_runs_line(studio.config.out)}", err=True)
    sys.stderr.flush()
    os._exit(130)  # the job's thread cannot be stopped from here, and exiting normally would wait on it


def ui(
    host: Annotated[str, typer.Option(help="Address to serve on; 0.0.0.0 lets other machines in (and anyone "
                                      "reaching the page sees every run in --out, photos included).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 7860,
    model: Annotated[str, typer.Option(
        "--model", "-m", help="The model the page starts with (it offers every installed one, or a path).")
    ] = "tinyfaces",
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Each run is kept in its own folder here, listed on the page after a restart.")
    ] = Path("lowdim-ui"),
    share: Annotated[bool, typer.Option("--share",
        help="Also open a public gradio.live link (off: this machine only); anyone reaching the page sees every "
             "run in --out, photos included.")] = False,
    model_config: ModelConfig = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
):
    """A local web page: drop one face photo, get your personalized model, see it in every style, download it.

    Needs the ui extra: pip install 'lowdim\\[ui]'. Example (then open http://127.0.0.1:7860 in a browser):

      lowdim ui --model tinyfaces
    """
    serve(host, port, model, out, share, model_config, device, dtype)


def register(app: typer.Typer) -> None:
    app.command()(ui)
