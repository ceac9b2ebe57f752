"""What the `lowdim ui` tests ask the page, and read back from it (tests/sd is on the path as pytest puts it)."""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest


def handler(page, name: str):
    """The page's event handler that Gradio's API calls ``/name``."""
    [found] = [fn for fn in page.fns.values() if fn.api_name == name]
    return found.fn


def refused(call, *args, **kwargs) -> str:
    """The one line the page shows for a request made by calling its handler."""
    import gradio as gr

    with pytest.raises(gr.Error) as caught:
        call(*args, **kwargs)
    return caught.value.message


def refusal(client, *args, api_name: str) -> str:
    """The one line a request through gradio_client got back from the page."""
    import gradio_client

    with pytest.raises(gradio_client.exceptions.AppError) as caught:
        client.predict(*args, api_name=api_name)
    return str(caught.value)


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width`` x ``height`` pixels: enough for a reader of the header, tiny on disk."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk
                     + struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    return path


@contextlib.contextmanager
def served_page(out: Path, **launch: object) -> Iterator[tuple[str, object]]:
    """The TinyFaces page served in this process as ``lowdim ui`` serves it, runs kept in ``out``: its address
    and its studio, closed afterwards."""
    from local_port import free_port  # tests/sd, on the path as pytest puts it

    from lowdim_sd.ui.page import build_page
    from lowdim_sd.ui.studio import Studio, StudioConfig

    studio = Studio(StudioConfig(model="tinyfaces", out=out))
    page = build_page(studio)
    port = free_port()
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                **launch)
    try:
        yield f"http://127.0.0.1:{port}/", studio
    finally:
        page.close(verbose=False)
