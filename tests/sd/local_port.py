"""A free TCP port on this machine, for the tests that serve `lowdim ui` (tests/sd is on the path)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
