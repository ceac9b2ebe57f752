"""Counting the stop signals that reached the `lowdim` script (``errors.stop_on_signals``), not its handler's
calls: CPython runs a handler once for all the signals that arrive during one long call into C."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Sequence


class SignalCount:
    """How many of ``signums`` reached this process: not how many times their Python handler ran, since CPython
    keeps one pending flag a signal, so three Ctrl-Cs during one long call into C (a big tensor op, a save) run
    it once, after the call. CPython's C handler also writes each arrival's number, one byte, to the wakeup fd
    (``signal.set_wakeup_fd``): here, a socket of ours, read by ``counted``.

    A signal whose byte went elsewhere (another wakeup fd, an event loop's in the main thread, replaced ours)
    counts once a handler call, as Python's flags do; and a call that finds no byte while the socket is still
    ours is the flag of a signal an earlier call's read already counted: it arrived while that call ran."""

    def __init__(self, signums: Sequence[int]) -> None:
        self.signums = frozenset(int(signum) for signum in signums)
        self.calls = 0  # handler calls while the bytes came to us
        self.bytes = 0  # the signals' bytes read
        self.blind = 0  # handler calls while another wakeup fd took the bytes
        WakeupSocket.take()
        WakeupSocket.drained(self.signums)  # an earlier command's in this process are not this one's

    @property
    def total(self) -> int:
        # A call can also come before its byte is read (it arrived as the wakeup fd was set, or its C handler
        # ran in another thread): so at least one a call, never a byte counted twice.
        return max(self.calls, self.bytes) + self.blind

    def counted(self) -> int:
        """The total, with the signals the handler's call now brought (call it once per handler call)."""
        read = WakeupSocket.drained(self.signums)
        if read or WakeupSocket.was_ours():
            self.calls, self.bytes = self.calls + 1, self.bytes + read
        else:
            self.blind += 1
        return self.total


class WakeupSocket:
    """The socket CPython writes a byte per signal to: one a process, opened by the first ``take``, in the main
    thread (the only one that may set the wakeup fd). Never taken from another owner: an event loop whose
    wakeup fd this replaced would no longer wake on signals."""

    ends: tuple[socket.socket, socket.socket] | None = None  # (read, write)

    @classmethod
    def take(cls) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if cls.ends is None:
            read_end, write_end = socket.socketpair()  # a socket, not a pipe: Windows' wakeup fd must be one
            for end in (read_end, write_end):
                end.setblocking(False)  # a full buffer must never block the C handler; nor the read, ever
            cls.ends = (read_end, write_end)
            if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
                os.register_at_fork(before=cls.lend_before_fork, after_in_parent=cls.take_back_after_fork,
                                    after_in_child=cls.forget_in_child)
        cls.was_ours()

    @classmethod
    def was_ours(cls) -> bool:
        """Whether the bytes came to us until now; ours again from now on where no wakeup fd is set (an event loop
        in the main thread clears the one it set as it closes), another owner's put back."""
        if cls.ends is None:
            return False
        ours = cls.ends[1].fileno()
        previous = signal.set_wakeup_fd(ours, warn_on_full_buffer=False)
        if previous not in (-1, ours):
            signal.set_wakeup_fd(previous)
        return previous == ours

    @classmethod
    def drained(cls, signums: frozenset[int]) -> int:
        """How many bytes of ``signums`` were waiting; all the bytes are read (other signals' too)."""
        count = 0
        while cls.ends is not None:
            try:
                chunk = cls.ends[0].recv(4096)
            except BlockingIOError:
                break
            if not chunk:  # the write end closed, which never happens while the process lives: no loop
                break
            count += sum(byte in signums for byte in chunk)
        return count

    lent = False  # set aside for a fork under way: the child must not start with our wakeup fd

    @classmethod
    def lend_before_fork(cls) -> None:
        """No wakeup fd while the process forks: a child inherits the one set, and until its own hook runs (it may
        not be scheduled for a while) each signal the terminal sends it would write its byte to our socket."""
        if cls.ends is None or threading.current_thread() is not threading.main_thread():
            return
        previous = signal.set_wakeup_fd(-1)
        cls.lent = previous == cls.ends[1].fileno()
        if not cls.lent:
            signal.set_wakeup_fd(previous)  # another owner's: theirs to hand on

    @classmethod
    def take_back_after_fork(cls) -> None:
        if cls.lent and cls.ends is not None:
            cls.lent = False
            signal.set_wakeup_fd(cls.ends[1].fileno(), warn_on_full_buffer=False)

    @classmethod
    def forget_in_child(cls) -> None:
        """A forked process (a DataLoader's worker) shares the socket, and the terminal sends Ctrl-C to every
        process of its group: its signals must not count as the parent's, nor its handler read the parent's."""
        cls.lent = False
        if cls.ends is None:
            return
        try:
            previous = signal.set_wakeup_fd(-1)  # the forking thread is the child's main thread
        except ValueError:  # it is not (another interpreter's fork): leave the socket as it was
            return
        if previous != cls.ends[1].fileno():
            signal.set_wakeup_fd(previous)
        for end in cls.ends:
            end.close()
        cls.ends = None
