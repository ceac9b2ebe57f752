"""What a notebook shows when a cell's last line is a result: ``Generated`` as its picture and a short line,
``PersonalizeResult`` as a short line and its preview's cells. Drawn from what the object holds (no file is read),
and never raising: a display that fails would hide the cell's other output."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

THUMBNAIL = 256  # px: a 512 px preview's six cells would otherwise put megabytes into the .ipynb
SHOWN = 128  # px on the page, at least: TinyFaces' 32 px cells are drawn larger, pixels kept sharp


def png_bytes(image: Any, largest: int | None = None) -> bytes | None:
    """``image`` (a PIL image) as PNG bytes, shrunk to ``largest`` px a side if given; None for anything else."""
    try:
        if largest and max(image.size) > largest:
            image = image.copy()
            image.thumbnail((largest, largest))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    except Exception:  # not a picture, or one PIL cannot write: nothing to show, never an error
        return None


def generated_repr(item: Any) -> str:
    """``Generated(prompt='a [V] face', seed=0, size=32x32)``: no PIL object address."""
    try:
        size = "x".join(str(side) for side in item.image.size)
    except Exception:
        size = "none"
    return f"Generated(prompt={item.prompt!r}, seed={item.seed!r}, size={size})"


def result_repr(result: Any) -> str:
    """``PersonalizeResult(adapter='me/adapter.safetensors', steps=10, seconds=7.1, preview='me/preview.png')``."""
    try:
        preview = None if result.preview is None else str(result.preview)
        return (f"PersonalizeResult(adapter={str(result.adapter)!r}, steps={_steps(result)}, "
                f"seconds={_seconds(result)}, preview={preview!r})")
    except Exception:
        return "PersonalizeResult(...)"


def result_html(result: Any) -> str:
    """The short line, the stage times, and the preview's cells (``gallery``) with their captions."""
    try:
        stages = ", ".join(f"{html.escape(str(name))} {float(took):.1f} s" for name, took in result.stages.items())
    except Exception:
        stages = ""
    cells = "".join(_cell(caption, image) for caption, image in _gallery(result))
    return (f"<div><code>{html.escape(result_repr(result))}</code>"
            + (f"<div>{stages}</div>" if stages else "")
            + (f"<div style='display:flex;flex-wrap:wrap;gap:4px'>{cells}</div>" if cells else "") + "</div>")


def _cell(caption: Any, image: Any) -> str:
    data = png_bytes(image, THUMBNAIL)
    if data is None:
        return ""
    width = max(SHOWN, min(image.size[0], THUMBNAIL))  # image.size is there: PIL wrote it
    source = base64.b64encode(data).decode("ascii")
    return (f"<figure style='margin:0;width:{width}px'><img src=\"data:image/png;base64,{source}\" "
            f"style='width:{width}px;image-rendering:pixelated'/><figcaption style='font-size:small'>"
            f"{html.escape(str(caption))}</figcaption></figure>")


def _gallery(result: Any) -> list:
    try:
        return [(caption, image) for caption, image in result.gallery]
    except Exception:
        return []


def _steps(result: Any) -> Any:
    try:
        return len(result.losses)
    except Exception:
        return "?"


def _seconds(result: Any) -> Any:
    try:
        return round(sum(float(took) for took in result.stages.values()), 1)
    except Exception:
        return "?"
