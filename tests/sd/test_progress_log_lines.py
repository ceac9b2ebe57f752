"""A long run whose stderr is a file (`lowdim train ... 2> log`, nohup, a CI log) says how far it is now and then
(review DA 6b): no bar frames there, but at most one plain line a minute, none in the first minute, so a short run's
captured stderr stays empty and a failed command's stderr stays its one line."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

from lowdim_sd import progress_bars, runs

SECONDS_PER_STEP = 2.0


class Clock:
    """``time.perf_counter`` for the test: it moves only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "perf_counter", fake)
    return fake


def run(clock: Clock, total: int, values: bool = True, **options) -> None:
    """A run of ``total`` steps, ``SECONDS_PER_STEP`` each, on the default console (stderr: captured, not a tty)."""
    with runs.progress(total, **options) as advance:
        for step in range(total - options.get("start", 0)):
            clock.now += SECONDS_PER_STEP
            advance(0.1234 + step if values else None)


def lines_of(err: str) -> list[str]:
    return err.splitlines()


def test_a_long_run_in_a_log_writes_a_plain_line_each_minute_and_none_at_the_start(clock, capsys):
    run(clock, 400)  # 800 s
    lines = lines_of(capsys.readouterr().err)
    assert lines[0] == "training: step 30/400 (7%), loss 29.1234, 2.00 s/it, 12m20s left"  # after 60 s, not before
    assert lines[1] == "training: step 60/400 (15%), loss 59.1234, 2.00 s/it, 11m20s left"
    assert len(lines) == 800 // progress_bars.LOG_EVERY  # one a minute, never one per step
    assert all(re.fullmatch(r"training: step \d+/400 \(\d+%\), loss [\d.]+, 2\.00 s/it, (\d+m)?\d+s left", line)
               for line in lines)


def test_lines_come_at_most_once_per_log_every_however_uneven_the_steps(clock, capsys):
    written_at = []
    with runs.progress(100, "training") as advance:
        for gap in [59.0, 0.5, 0.5, 10.0, 49.5, 0.1, 30.0, 30.0, 200.0, 1.0]:
            clock.now += gap
            advance(0.5)
            if capsys.readouterr().err:
                written_at.append(clock.now - 1000.0)
    assert written_at == pytest.approx([60.0, 149.6, 379.6])  # 60 s from the start, then 60 s from the last line


def test_a_run_shorter_than_a_minute_writes_nothing(clock, capsys):
    run(clock, 29)  # 58 s
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("options", [{"enabled": False}, {"transient": True}], ids=["disabled", "transient"])
def test_a_bar_turned_off_or_transient_writes_no_line(clock, capsys, options):
    run(clock, 400, **options)
    assert capsys.readouterr() == ("", "")


def test_a_bar_without_loss_says_only_the_step_and_the_time_left(clock, capsys):
    run(clock, 400, label="generating", loss=False)
    assert lines_of(capsys.readouterr().err)[0] == "generating: step 30/400 (7%), 12m20s left"


def test_a_step_without_a_value_has_no_loss_in_its_line(clock, capsys):
    run(clock, 100, values=False)
    assert lines_of(capsys.readouterr().err)[0] == "training: step 30/100 (30%), 2.00 s/it, 2m20s left"


def test_the_line_shows_a_renamed_label_as_given_never_as_markup(clock, capsys):
    with runs.progress(400, "faces/me[v]") as advance:
        clock.now += 61.0
        advance(0.5, label="[bold]x[/]y")
    assert capsys.readouterr().err == "[bold]x[/]y: step 1/400 (0%), loss 0.5000, 61.00 s/it, 6h45m left\n"


def test_a_resumed_run_counts_from_its_start_and_times_only_its_own_steps(clock, capsys):
    run(clock, 400, start=370)  # 30 steps, 60 s
    assert capsys.readouterr().err == "training: step 400/400 (100%), loss 29.1234, 2.00 s/it, 0s left\n"


def test_on_a_terminal_the_bar_is_there_and_no_line(clock, monkeypatch):
    screen = Console(file=io.StringIO(), force_terminal=True, width=100)
    monkeypatch.setattr(runs, "bar_console", lambda: screen)
    run(clock, 100)
    shown = screen.file.getvalue()
    assert "100/100" in shown and "training: step" not in shown


def test_in_a_notebook_no_line(clock, monkeypatch):
    notebook = Console(file=io.StringIO(), force_jupyter=True, width=100)
    monkeypatch.setattr(runs, "bar_console", lambda: notebook)
    run(clock, 100)
    assert "training: step" not in notebook.file.getvalue()


def test_a_bar_on_a_console_of_its_own_writes_no_line(clock):
    own = Console(file=io.StringIO(), width=100)  # not a terminal: the caller's console keeps its last frame only
    run(clock, 100, console=own)
    assert "training: step" not in own.file.getvalue()


def test_the_listener_still_hears_every_step_of_a_logged_run(clock, capsys):
    heard: list[int] = []
    with runs.listen(lambda label, done, total: heard.append(done)):
        run(clock, 40)
    assert heard == list(range(1, 41)) and capsys.readouterr().err


class GoneLog(io.StringIO):
    """A stderr whose reader went away (`2>&1 | head -1` after its line, a closed log): every write fails."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_run_whose_log_went_away_runs_on(clock, monkeypatch):
    monkeypatch.setattr(runs, "bar_console", lambda: Console(file=GoneLog(), width=100))
    heard: list[int] = []
    with runs.listen(lambda label, done, total: heard.append(done)):
        run(clock, 100)  # a progress line is a courtesy: it never stops a two-hour training
    assert heard[-1] == 100
