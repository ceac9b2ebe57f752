"""What the CLI tests of `lowdim train` runs share: two small reference pictures (the fixture ``refs``, or
``one_subject`` for a module's fixture), the train command (``train_args``), a command run and its output as one line
(``run``), and a Ctrl-C as a given step starts (``interrupt_at``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

from lowdim_cli.main import main
from lowdim_sd import train as engine


def one_subject(folder: Path, side: int = 24) -> Path:
    """Two small random pictures of one subject (always the same ones), written to ``folder``."""
    save_images(torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(1)) * 2 - 1, folder, "me")
    return folder


@pytest.fixture(name="refs")
def reference_pictures(tmp_path):
    """``one_subject``'s pictures, in tmp_path/refs."""
    return one_subject(tmp_path / "refs")


def train_args(model: Path, refs: Path, out: Path, *extra: str) -> list[str]:
    """`lowdim train` of ``refs`` on ``model`` into ``out``, as ``main`` takes it."""
    return ["train", "-m", str(model), "-i", str(refs), "-o", str(out), *extra]


def run(capsys, *args) -> tuple[int, str]:
    """``lowdim ARGS``: its exit code, and its stdout and stderr as one line (the terminal wraps them anywhere)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def interrupt_at(monkeypatch, at: int) -> None:
    """A Ctrl-C as step ``at`` starts (what `timeout -s INT` does to a run)."""
    real = engine.denoising_losses

    def stop(m, s, c, step, *a, **k):
        if step == at:
            raise KeyboardInterrupt
        return real(m, s, c, step, *a, **k)

    monkeypatch.setattr(engine, "denoising_losses", stop)
