"""Whether the Hugging Face hub can be reached, whether a model source names a folder, and loading
from it without transformers' chatter.

Without network, ``from_pretrained`` on an uncached hub id retries for about a minute before it
fails. Callers try the local cache first and go to the hub only when a connection to it opens
within a few seconds, so an offline machine gets one clear line at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from functools import lru_cache
from urllib.parse import urlparse


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub accepts a TCP connection now (False when offline mode is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return False
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def looks_like_path(source: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else (``./x``, ``/x``, ``a/b/c``, ``~``) is a path."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or os.sep != "/" and os.sep in source


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' chatter (unused weights, progress bars) is not for our users."""
    from transformers.utils import logging as transformers_logging

    level, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        transformers_logging.set_verbosity(level)
        if bars:
            transformers_logging.enable_progress_bar()
