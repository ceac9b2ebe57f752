"""Test helper: rewrite a safetensors file in place with some tensors or metadata values replaced."""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file


def rewrite(path: Path, tensors=None, **metadata: str) -> Path:
    """The file at ``path`` with some tensors and metadata values replaced (a hostile edit of a good file)."""
    with safe_open(str(path), framework="pt") as handle:
        old_meta = handle.metadata()
        old = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    save_file({**old, **(tensors or {})}, str(path), metadata={**old_meta, **metadata})
    return path
