"""Load a transformers model for a metric from a folder, the Hugging Face cache, or (if reachable) the hub.

Without network, ``from_pretrained`` on an uncached hub id retries for about a minute before it
fails. A metric should instead be skipped at once with a note, so the cache is tried first, and the
hub only when a connection to it opens within a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from safetensors import SafetensorError

from lowdim.errors import first_line
from lowdim.hub import hub_reachable, looks_like_path, quiet_transformers
from lowdim.metrics import MetricUnavailable
from lowdim.option_words import either
from lowdim.paths import expand_user

# Errors transformers raises for a folder or id it can't use (missing files, a wrong config); safetensors' own
# error (a cut-short file) derives from Exception only.
_LOAD_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError)


class UnusableModel(Exception):
    """A loader's refusal of a model it found (of the wrong kind, a damaged file), in words a user can act on.

    Said as the reason the model could not be loaded, and never taken for "not in the cache": the hub would give
    the same files again.
    """


_NOT_LOADED: tuple[type[Exception], ...] = (UnusableModel, *_LOAD_ERRORS)


def load_pretrained(load: Callable[..., Any], source: str, what: str, flag: str, api: str | None = None) -> Any:
    """``load(source, **kwargs)`` (a ``from_pretrained``), or MetricUnavailable saying what to do.

    ``what`` names the model in messages ("DINO"); ``flag`` is the CLI option that takes a path, and ``api`` the
    Python words for it (``EvalJob(options={"dino": {"model": PATH}})``), said when the library is called from
    Python (without it, the flag is said there too).
    """
    path = expand_user(source)
    with quiet_transformers():
        if path.is_dir():
            try:
                return load(str(path))
            except _NOT_LOADED as error:
                raise MetricUnavailable(f"could not load the {what} model from {path}: {first_line(error)}") from None
        if looks_like_path(source) or path.exists():
            advice = _advice(f"pass {flag} with a model folder", api, "give a model folder as")
            raise MetricUnavailable(f"{what} model folder {source} not found; {advice}")
        try:
            return load(source, local_files_only=True)
        except UnusableModel as error:
            raise MetricUnavailable(f"could not load the {what} model '{source}': {error}") from None
        except _LOAD_ERRORS:
            pass  # not in the cache: try the hub below
        if not hub_reachable():
            advice = _advice(f"pass {flag} PATH to a local copy", api, "give a local copy as")
            typo = f"no folder {source} here, and " if "/" not in source else ""  # a hub id has an owner, mostly
            raise MetricUnavailable(f"{typo}{what} model '{source}' is not in the Hugging Face cache and the hub "
                                    f"can't be reached; download it where there is network, or {advice}")
        try:
            return load(source)
        except _NOT_LOADED as error:
            raise MetricUnavailable(f"could not load the {what} model '{source}': {first_line(error)}") from None


def _advice(cli: str, api: str | None, api_verb: str) -> str:
    """The fix in the reader's words: ``cli`` (word for word: the ui's page terms rewrite it) under ``lowdim``,
    ``api_verb api`` from Python."""
    return either(cli, f"{api_verb} {api}") if api else cli
