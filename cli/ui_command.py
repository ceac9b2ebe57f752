"""``lowdim ui``: serve the web page (lowdim_sd.ui) on this machine."""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from lowdim.errors import LowdimError
from lowdim_cli.sd_commands import Device, Dtype, ModelConfig

INSTALL_HINT = "pip install 'lowdim[ui]'"


def check_port(host: str, port: int) -> None:
    """Refuse a port that is out of range or taken, in one line, before Gradio starts."""
    if not 1 <= port <= 65535:
        raise LowdimError(f"--port must be 1 to 65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise LowdimError(f"port {port} on {host} is already in use (another lowdim ui?); pass --port "
                                  f"with a free one") from None
            raise LowdimError(f"cannot serve on {host}:{port}: {error.strerror}") from None


def serve(host: str, port: int, model: str, out: Path, share: bool, model_config: str | None, device: str,
          dtype: str, ready=None) -> None:
    """Check everything a user can get wrong, then serve until Ctrl-C (``ready``: called once serving)."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise LowdimError(f"lowdim ui needs Gradio, which is not installed: {INSTALL_HINT}") from None
    from lowdim_sd.loading import check_training_dtype
    from lowdim_sd.ui.checks import check_model
    from lowdim_sd.ui.page import CSS, build_page
    from lowdim_sd.ui.studio import Studio, StudioConfig

    model = check_model(model)
    check_training_dtype(device, dtype)  # every run the page starts trains: refused now, not on the first click
    check_port(host, port)
    studio = Studio(StudioConfig(model=model, out=out, model_config=model_config, device=device, dtype=dtype))
    page = build_page(studio)
    import gradio as gr

    theme = gr.themes.Soft(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])  # offline
    try:  # a stop from the launch on closes the server as below, whenever it comes
        page.launch(server_name=host, server_port=port, share=share, inbrowser=False, show_error=True,
                    ssr_mode=False, allowed_paths=[str(out.resolve())], theme=theme, css=CSS, quiet=True,
                    footer_links=[], prevent_thread_lock=True)
        typer.echo(f"lowdim ui: serving on http://{host}:{port} (Ctrl-C stops it); runs are kept in {out}")
        if ready is not None:
            ready(page)
            return
        while page.is_running:
            time.sleep(0.1)
        return  # closed from elsewhere: nothing was interrupted
    except KeyboardInterrupt:
        pass
    close_after_a_stop(page, studio)


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
    page.close(verbose=False)  # its "Closing server" line on stdout would come before lowdim's own
    what = f"the {stopped} in flight was stopped" if stopped else "no job was running"
    raise KeyboardInterrupt(f"interrupted: {what}; {kept_runs_line(studio.config.out)}")


def quit_at_once(studio) -> None:
    """A second Ctrl-C while the job in flight has not reached its next step (a model still loading): leave
    now. The job's hidden folder stays behind, and the next start removes it."""
    from lowdim_sd.ui.run_folders import kept_runs_line

    typer.echo(f"Interrupted again: quit without waiting for the job in flight; its hidden folder is removed at "
               f"the next start; {kept_runs_line(studio.config.out)}", err=True)
    sys.stderr.flush()
    os._exit(130)  # the job's thread cannot be stopped from here, and exiting normally would wait on it


def ui(
    host: Annotated[str, typer.Option(help="Address to serve on; 0.0.0.0 lets other machines in.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 7860,
    model: Annotated[str, typer.Option(
        "--model", "-m", help="The model the page starts with (it offers every installed one, or a path).")
    ] = "tinyfaces",
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Each run is kept in its own folder here, listed on the page after a restart.")
    ] = Path("lowdim-ui"),
    share: Annotated[bool, typer.Option("--share",
        help="Also open a public gradio.live link (off: this machine only).")] = False,
    model_config: ModelConfig = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
):
    """A local web page: drop one face photo, get your personalized model, see it in every style, download it.

    Needs the ui extra: pip install 'lowdim\\[ui]'. Example: lowdim ui --model tinyfaces, then open
    http://127.0.0.1:7860
    """
    serve(host, port, model, out, share, model_config, device, dtype)


def register(app: typer.Typer) -> None:
    app.command()(ui)
