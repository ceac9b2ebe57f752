"""Every command draws its bar on lowdim's bar console (stderr, a terminal only), eval's and bench speed's too:
their stdout holds the scores and the table a user pipes on."""

from __future__ import annotations

import contextlib

import lowdim_sd.runs as runs


def test_evals_bar_is_drawn_where_every_bar_is(monkeypatch):
    from lowdim_cli.eval_command import progress_bar

    asked = []

    @contextlib.contextmanager
    def spy(total, label="training", **options):
        asked.append(options)
        yield lambda **kwargs: None

    monkeypatch.setattr(runs, "progress", spy)
    with progress_bar(True) as start:
        start(3)(1)
    assert asked and asked[0].get("console") is None  # runs.bar_console(): stderr


def test_bench_speeds_bar_is_drawn_where_every_bar_is(monkeypatch, tmp_path):
    import lowdim_sd.bench.speed as speed
    from lowdim_cli.main import main

    seen = {}

    def run_speed(job, progress=True, console=None):
        seen["console"] = console
        raise KeyboardInterrupt  # the bar's console is all this test needs

    monkeypatch.setattr(speed, "run_speed", run_speed)
    main(["bench", "speed", "--quick", "--device", "cpu", "-o", str(tmp_path / "s")])
    assert "console" in seen and seen["console"] is None
