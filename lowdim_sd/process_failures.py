"""When one process of a launched run (torchrun, accelerate launch) fails, the others hear of it within seconds and
stop with its line, instead of waiting for it: forever where the process group is still forming (a process on
another machine that failed first never joins it), or until a collective breaks, which says only "Connection
closed by peer", as a traceback; or, in a loop with no collective (precompute's training), for hours.

The failing process posts its line to the launcher's store (the key-value store torchrun's agent keeps for the
run's processes, on every machine the same, reachable before the process group forms and after a process ended),
then ends as it would. The others read the line where they notice: a collective that its end broke, a stop (the
launcher's SIGTERM, which on one machine ends the rest as soon as one process ends; or a watch, once a second, that
asks the loop in flight to stop at its next step, keeping what a stop keeps), or the wait for every process before
the process group forms (``join_the_others``). From then on a signal is only noted in that process: the launcher's
SIGTERM comes a moment after the failed process's end, and must not cut the line or the checkpoint it is at.

Neither a per-step flag nor a process-group timeout does this: a failing process cannot take part in the step's
collective (it fails in its data, its forward or before the first step, while DDP already waits in the backward),
and a timeout long enough for the run's own waits (the main process's validation and checkpoints, precompute's
uneven shares) is minutes, and says nothing of why. A run not launched so (one process, or no agent's store) is
left as it was.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import torch

from lowdim.errors import LowdimError, first_line
from lowdim_sd import stopping

if TYPE_CHECKING:  # where torch defines them (torch.distributed imports them without exporting them)
    from torch._C._distributed_c10d import Store

WATCH_SECONDS = 1.0  # how often a working process looks for another's failure
LINE_SECONDS = 5.0  # how long a broken collective waits for the failed process's line (posted before its end)
JOIN_SECONDS = 30 * 60.0  # torch's own bound on forming a process group
STORE_SECONDS = 30  # one request to the launcher's store (it answers in milliseconds)
LINE_CHARACTERS = 1000
TOLD = "_lowdim_told_the_others"  # the mark of an error already posted
# What gloo raises in a process whose peer ended (NCCL's errors are torch.distributed.DistError).
BROKEN_WORDS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


class AnotherProcessFailed(LowdimError):
    """Another process of this launched run failed (its line is in this one's), or ended without a word."""


@dataclass(frozen=True)
class Failure:
    """Which process failed, and its line (rank None: one whose collective broke without a line posted)."""

    rank: int | None
    world: int
    line: str

    def __str__(self) -> str:
        if self.rank is None:
            return ("another process of this run ended without a word (killed, or out of memory?); its own output "
                    "or the launcher's may say why")
        return f"process {self.rank + 1} of {self.world} failed: {self.line}"


def launched() -> bool:
    """Whether a launcher (torchrun, accelerate launch) started this process, one of several, beside its store."""
    rank, world = os.environ.get("RANK", ""), os.environ.get("WORLD_SIZE", "")
    return (rank.isdigit() and world.isdigit() and int(world) > 1
            and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True")


class LaunchedRun:
    """This process's part of the launcher's store: the line it posts, and the lines it reads of the others."""

    def __init__(self, rank: int, world: int, store: Store, prefix: str) -> None:
        self.rank, self.world, self.store, self.prefix = rank, world, store, prefix

    @classmethod
    def connect(cls) -> LaunchedRun | None:
        """A new connection to the store of the launcher that started this process; None outside one."""
        if not launched():
            return None
        from torch._C._distributed_c10d import TCPStore  # there wherever a launcher runs (torch.distributed is)

        env = os.environ
        try:
            store = TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False,
                             timeout=timedelta(seconds=STORE_SECONDS), wait_for_workers=False)
        except (KeyError, ValueError, RuntimeError):
            return None  # no store to reach: the run goes on as it would without this module
        # Keys of this attempt only: torchrun restarts a failed run's processes as a new attempt.
        prefix = f"lowdim/{env.get('TORCHELASTIC_RUN_ID', '')}/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
        return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), store, prefix)

    def post(self, line: str) -> None:
        """This process's failure; the first process's to fail stands, as the run's cause."""
        self.store.compare_set(self.prefix + "failed", "", f"{self.rank}\t{line[:LINE_CHARACTERS]}")

    def failure(self, wait: float = 0.0) -> Failure | None:
        """Another process's failure, once it is posted (waiting up to ``wait`` seconds for it)."""
        key, deadline = self.prefix + "failed", time.monotonic() + wait
        while not self.store.check([key]):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        rank, _, line = self.store.get(key).decode(errors="replace").partition("\t")
        return None if int(rank) == self.rank else Failure(int(rank), self.world, line)

    def join(self) -> None:
        """Wait for every process to arrive here, or stop with the line of one that failed on its way."""
        arrived = self.prefix + "arrived"
        self.store.add(arrived, 1)
        deadline = time.monotonic() + JOIN_SECONDS
        while (count := self.store.add(arrived, 0)) < self.world:
            failure = self.failure()
            if failure is not None:
                _signals_noted_until_exit()
                raise AnotherProcessFailed(str(failure))
            if time.monotonic() > deadline:
                raise AnotherProcessFailed(f"{self.world - count} of this run's {self.world} processes did not start "
                                           f"it within {JOIN_SECONDS / 60:.0f} min; their own output says why")
            time.sleep(0.1)


def join_the_others() -> None:
    """Before the process group forms: wait for every process of a launched run, in Python (a SIGTERM stops it), and
    stop with the line of one that failed before it got here; forming the group would wait for that one forever."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    run = LaunchedRun.connect()
    if run is not None:
        run.join()


def broken_collective(error: BaseException) -> bool:
    """Whether ``error`` is a collective that another process's end broke."""
    if isinstance(error, getattr(torch.distributed, "DistError", ())):
        return True
    return isinstance(error, RuntimeError) and any(words in str(error) for words in BROKEN_WORDS)


def another_failure(error: BaseException) -> Failure | None:
    """The other process's failure behind ``error`` (a collective that its end broke, or a stop that came with it);
    None where ``error`` is this process's own, or no launcher's store is there to say otherwise."""
    broken = broken_collective(error)
    if not (broken or isinstance(error, KeyboardInterrupt)):
        return None
    run = LaunchedRun.connect()
    if run is None:
        return None
    failure = run.failure(LINE_SECONDS if broken else 0.0)
    if failure is None and broken:
        failure = Failure(None, run.world, "")
    if failure is not None:
        _signals_noted_until_exit()
    return failure


class _UntilExit:
    """A signal only noted in this process, from another's failure read to this process's exit."""

    def __init__(self) -> None:
        self.hold: contextlib.ExitStack | None = None

    def start(self) -> None:
        if self.hold is None:
            self.hold = contextlib.ExitStack()
            self.hold.enter_context(stopping.held())

    def end(self) -> None:
        if self.hold is not None:
            self.hold.close()
            self.hold = None


_UNTIL_EXIT = _UntilExit()


def _signals_noted_until_exit() -> None:
    """This process stops as another failed: the launcher's SIGTERM, which follows the failed process's end by a
    tenth of a second, is only noted from here on, so it cuts neither the step this process keeps nor its line (a
    third signal still forces the exit, as always)."""
    _UNTIL_EXIT.start()


def signals_stop_again() -> None:
    """Undo ``_signals_noted_until_exit``, for a process that goes on after a run failed (a test of this module)."""
    _UNTIL_EXIT.end()


def failure_line(error: BaseException) -> str:
    """The line a failed process posts: a user's mistake as the CLI prints it, anything else by its kind."""
    return str(error) if isinstance(error, LowdimError) else f"{type(error).__name__}: {first_line(error)}"


def tell_the_others(error: Exception) -> None:
    """This process failed: post its line for the others, once (a run's loop inside its whole command tells once)."""
    if getattr(error, TOLD, False):
        return
    run = LaunchedRun.connect()
    if run is not None:
        run.post(failure_line(error))
        setattr(error, TOLD, True)


@contextlib.contextmanager
def failing_together() -> Iterator[None]:
    """Around a launched run's work: this process's failure told to the others, theirs made this one's stop with
    their line (``AnotherProcessFailed``), and a watch that stops this process's loop at its next step once another
    failed. Outside a launcher's run, nothing."""
    run = LaunchedRun.connect()
    watch = _Watch(run) if run is not None else None
    try:
        yield
    except AnotherProcessFailed:
        raise
    except BaseException as error:
        with stopping.held():  # the launcher's SIGTERM, which follows the failed process's end, is only noted
            failure = another_failure(error)
        if failure is not None:
            stopped = f"; this process stopped with it: {error}" if isinstance(error, KeyboardInterrupt) and str(
                error) else ""
            raise AnotherProcessFailed(f"{failure}{stopped}") from None
        if isinstance(error, Exception):
            tell_the_others(error)
        raise
    finally:
        if watch is not None:
            watch.end()


class _Watch:
    """A thread that looks for another process's failure once a second and asks the loop in flight to stop."""

    def __init__(self, run: LaunchedRun) -> None:
        self.done, self.asked = threading.Event(), False
        # ``run`` is the thread's alone: a store client is not shared between threads.
        threading.Thread(target=self._look, args=(run,), name="lowdim-process-failures", daemon=True).start()

    def _look(self, run: LaunchedRun) -> None:
        while not self.done.wait(WATCH_SECONDS):
            try:
                failure = run.failure()
            except RuntimeError:
                return  # the launcher's store is gone, and with it the run
            if failure is not None:
                self.asked = True
                stopping.ask()  # taken up at the loop's next step, as a signal's stop: what it keeps, it keeps
                return

    def end(self) -> None:
        self.done.set()
        if self.asked:
            stopping.withdraw()  # a stop the loop did not take up must not stop the next job in this process
