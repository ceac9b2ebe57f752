"""A real ``lowdim ui`` server for the tests that need one (tests/sd, on the path as pytest puts it).

Its output is read as it comes, in threads, so a server that writes more than a pipe holds (~64 KiB) never
stalls, and each wait is on what the server says or does, with one generous bound, never a fixed time for the
whole exchange: a loaded machine then makes a test slower, not a flake (review BT9). A wait that runs out says
which wait it was and how the server's output ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from local_port import free_port

# The `lowdim` script, with Ctrl-C's handler as a terminal gives it (a shell's background job ignores SIGINT).
SCRIPT = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
          "from lowdim_cli.main import script; script()")
BOUND = 600  # s: how long any one wait may take on a loaded machine; each ends as soon as what it waits for happens
SERVING = "serving on"  # in lowdim's start line, on stdout


class Server:
    """``lowdim ui --model tinyfaces`` on a free port, as a user starts it, in its own process group (a
    terminal's Ctrl-C reaches the server, not pytest); started and serving once built. ``script`` is the Python
    the process runs (``SCRIPT``, after anything a test puts before it); ``threads`` its OMP_NUM_THREADS."""

    def __init__(self, out: Path, script: str = SCRIPT, threads: int = 1) -> None:
        self.out, self.port = out, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.said: list[str] = []  # both streams, in the order read, for the failure messages
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-c", script, "ui", "--model", "tinyfaces", "--port", str(self.port), "--out",
             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)}, start_new_session=True)
        self.readers = [threading.Thread(target=self._keep, args=(stream, lines), daemon=True)
                        for stream, lines in ((self.process.stdout, self.stdout_lines),
                                              (self.process.stderr, self.stderr_lines))]
        for reader in self.readers:
            reader.start()
        try:
            self.wait_for(lambda: self.process.poll() is not None or self._serving_line() is not None,
                          "its page to be served")
            assert self.process.poll() is None, f"the server exited before serving:\n{self.output()}"
        except BaseException:  # not yet the test's to close
            self.close()
            raise

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _keep(self, stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            self.said.append(line)

    def _serving_line(self) -> int | None:
        return next((index for index, line in enumerate(self.stdout_lines) if SERVING in line), None)

    def output(self) -> str:
        """How the server's output (both streams) ends, for a failure's message."""
        return "".join(self.said)[-3000:]

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    @property
    def stdout_after_start(self) -> str:
        """What the server wrote to stdout after its "serving on" line."""
        return "".join(self.stdout_lines[self._serving_line() + 1:])

    def wait_for(self, condition: Callable[[], object], what: str) -> None:
        """Wait until ``condition()`` is true, at most ``BOUND`` s; running out fails, naming ``what``."""
        deadline = time.monotonic() + BOUND
        while not condition():
            assert time.monotonic() < deadline, f"waited {BOUND} s for {what}; the server said:\n{self.output()}"
            time.sleep(0.1)

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Send ``signum`` (Ctrl-C's, by default), as a user stops the server; its exit status once it has
        exited and all it wrote has been read."""
        self.process.send_signal(signum)
        self.wait_for(lambda: self.process.poll() is not None, f"its exit after {signal.Signals(signum).name}")
        self._finish_reading()
        return self.process.returncode

    def close(self) -> None:
        """Kill the server if it still runs (a failed test's); idempotent."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._finish_reading()

    def _finish_reading(self) -> None:
        for reader in self.readers:
            reader.join(BOUND)
        assert not any(reader.is_alive() for reader in self.readers), (
            f"waited {BOUND} s for the end of the server's output after its exit (a child holding its pipes?)")
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()
