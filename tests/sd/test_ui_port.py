"""``lowdim ui``'s port check: a port something listens on is refused in one line before Gradio starts; a port
whose only sockets are the last server's closed connections (TIME_WAIT, for about a minute after Ctrl-C) is
not, since Gradio's server binds it anyway: "Ctrl-C, start it again" works."""

from __future__ import annotations

import errno
import os
import socket
import time

import pytest

from lowdim.errors import LowdimError
from lowdim_cli.ui_command import check_port

HOST = "127.0.0.1"


def port_left_in_time_wait() -> int:
    """A port whose server closed a connection first, as a stopped Gradio closes its tabs' connections: the
    server's side of it stays in TIME_WAIT on that port, and nothing listens there any more."""
    with socket.socket() as listener, socket.socket() as client:
        # As uvicorn (Gradio's server) binds; its connections inherit the option, which is what lets a new
        # server's bind through their TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen()
        port = listener.getsockname()[1]
        client.connect((HOST, port))
        served, _ = listener.accept()
        served.close()  # the server closes first: its side is the one left waiting
        client.recv(1)  # the server's FIN has arrived
    time.sleep(0.05)  # the client's FIN reaches the server's side, which enters TIME_WAIT
    return port


def plain_bind_refused(port: int) -> bool:
    with socket.socket() as plain:
        try:
            plain.bind((HOST, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


@pytest.mark.skipif(os.name == "nt", reason="Windows lets a plain bind through TIME_WAIT")
def test_a_port_left_in_time_wait_by_the_last_server_is_accepted():
    port = port_left_in_time_wait()
    if not plain_bind_refused(port):
        pytest.skip("this system's TIME_WAIT does not block a plain bind")
    check_port(HOST, port)  # no LowdimError: the server binds it as Gradio's own server would


@pytest.mark.parametrize("reusing", [False, True], ids=["plain", "SO_REUSEADDR"])
def test_a_port_something_listens_on_is_refused(reusing):
    with socket.socket() as server:
        if reusing:  # as uvicorn (Gradio's server) binds: still refused
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((HOST, 0))
        server.listen()
        port = server.getsockname()[1]
        with pytest.raises(LowdimError, match=f"^port {port} on {HOST} is already in use"):
            check_port(HOST, port)
