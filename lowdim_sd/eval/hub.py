"""Load a transformers model for a metric from a folder, the Hugging Face cache, or (if reachable) the hub.

Without network, ``from_pretrained`` on an uncached hub id retries for about a minute before it
fails. A metric should instead be skipped at once with a note, so the cache is tried first, and the
hub only when a connection to it opens within a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lowdim.errors import first_line
from lowdim.hub import hub_reachable, looks_like_path, quiet_transformers
from lowdim.metrics import MetricUnavailable

# Errors transformers raises for a folder or id it can't use (missing files, a wrong config).
_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError)


def load_pretrained(load: Callable[..., Any], source: str, what: str, flag: str) -> Any:
    """``load(source, **kwargs)`` (a ``from_pretrained``), or MetricUnavailable saying what to do.

    ``what`` names the model in messages ("DINO"); ``flag`` is the CLI option that takes a path.
    """
    path = Path(source).expanduser()
    with quiet_transformers():
        if path.is_dir():
            try:
                return load(str(path))
            except _LOAD_ERRORS as error:
                raise MetricUnavailable(f"could not load the {what} model from {path}: {first_line(error)}") from None
        if looks_like_path(source) or path.exists():
            raise MetricUnavailable(f"{what} model folder {source} not found; pass {flag} with a model folder")
        try:
            return load(source, local_files_only=True)
        except _LOAD_ERRORS:
            pass  # not in the cache: try the hub below
        if not hub_reachable():
            raise MetricUnavailable(
                f"{what} model '{source}' is not in the Hugging Face cache and the hub can't be reached; "
                f"download it where there is network, or pass {flag} PATH to a local copy")
        try:
            return load(source)
        except _LOAD_ERRORS as error:
            raise MetricUnavailable(f"could not load the {what} model '{source}': {first_line(error)}") from None
