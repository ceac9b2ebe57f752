"""What a real disk does to a command (review AS): a path too long, a full disk, a FIFO given as a file, a quoted
``~``; each is one line naming the path, and a refused run leaves nothing behind."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim_sd.loading
from lowdim_cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def one_line(code: int, text: str, expected: str) -> None:
    assert code == 1 and expected in text and "Traceback" not in text and text.count("Error:") == 1, text


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def no_model_load(monkeypatch):
    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))


# -------------------------------------------------------------------------------------- names too long (AS2, AS3)


def test_a_path_longer_than_the_file_system_takes_is_one_line(untrained_adapter, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    long = "n" * 250 + ".safetensors"
    for args in (("show", long), ("export", untrained_adapter, "-o", long)):
        code, text = run(capsys, *args)
        one_line(code, text, "File name too long")
        # The name is cut in its middle, so the reason still fits on one terminal line.
        assert long not in text and "nnn…nnn" in text and len(text) < 200, text
    assert os.listdir(tmp_path) == []


def test_an_export_to_a_long_name_the_file_system_takes_is_written(untrained_adapter, tmp_path, capsys):
    out = tmp_path / ("n" * 240 + ".safetensors")  # 252 bytes: legal, though its temp place's whole name is not
    code, text = run(capsys, "export", untrained_adapter, "-o", out)
    assert code == 0 and out.is_file() and os.listdir(tmp_path) == [out.name], text


# ------------------------------------------------------------------------------------------- a full disk (AS1)


def test_a_disk_that_fills_during_an_export_is_one_line(untrained_adapter, tmp_path, capsys, monkeypatch):
    import safetensors.torch

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    monkeypatch.setattr("lowdim.files.save_file", full)
    one_line(*run(capsys, "export", untrained_adapter, "-o", tmp_path / "e.safetensors"),
             "e.safetensors: could not write (No space left on device)")
    assert os.listdir(tmp_path) == []


def test_a_disk_that_fills_while_the_weight_index_is_rewritten_leaves_the_old_index_whole(tmp_path, monkeypatch):
    # precompute rewrites index.json after every batch: a half-written one would hide every finished shard.
    import pathlib

    from lowdim.errors import LowdimError
    from lowdim_sd.weight_index import read_json, write_json

    old = {"format": "lowdim.weights", "identities": [{"name": f"person{n}", "row": n} for n in range(20)]}
    write_json(tmp_path / "index.json", old)
    real = pathlib.Path.write_text

    def half_then_full(self, text, *args, **kwargs):
        real(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_full)
    with pytest.raises(LowdimError, match="index.json: could not write \\(No space left on device\\)"):
        write_json(tmp_path / "index.json", {**old, "identities": old["identities"] * 2})
    monkeypatch.undo()
    assert read_json(tmp_path / "index.json") == old and os.listdir(tmp_path) == ["index.json"]


def test_a_merge_too_big_for_the_disk_is_refused_before_the_model_loads(tiny_sd, untrained_adapter, tmp_path,
                                                                        capsys, monkeypatch, no_model_load):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=2 * 2**20))
    out = tmp_path / "m.safetensors"
    one_line(*run(capsys, "merge", "-m", tiny_sd, "-a", untrained_adapter, "-o", out), "2.0 MB free, the merge needs")
    assert not out.exists()


# ------------------------------------------------------------------------------- a refused run leaves nothing (AS6)


def test_a_run_refused_for_a_full_disk_leaves_no_empty_out(tiny_sd, untrained_adapter, tmp_path, capsys,
                                                           monkeypatch, no_model_load):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    out = tmp_path / "new" / "g"
    one_line(*run(capsys, "generate", "-m", tiny_sd, "-p", "a face", "-a", untrained_adapter, "-o", out),
             "0.0 MB free")
    assert os.listdir(tmp_path) == []


def test_an_out_found_read_only_leaves_no_folder_made_to_find_it(tmp_path, monkeypatch):
    import pathlib

    from lowdim.errors import LowdimError
    from lowdim_sd import runs

    def refuse(self, data):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(pathlib.Path, "write_bytes", refuse)
    with pytest.raises(LowdimError, match="not writable \\(Read-only file system\\)"):
        runs.check_usable(tmp_path / "new" / "o")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------- FIFOs as files (AS4, AS7)


def test_a_fifo_given_as_init_is_refused_at_once(tiny_sd, tmp_path, capsys, fifo, no_model_load):
    save_images(torch.rand(1, 3, 16, 16) * 2 - 1, tmp_path / "refs", "me")
    # A hung open (in safetensors' Rust, holding the GIL: no thread of this process could help) ends after 20 s.
    writer = subprocess.Popen(["sh", "-c", 'sleep 20; while :; do : > "$0"; done', str(fifo)])
    started = time.monotonic()
    try:
        code, text = run(capsys, "train", "-m", tiny_sd, "-i", tmp_path / "refs", "--init", fifo, "-o",
                         tmp_path / "o")
    finally:
        writer.kill()
        writer.wait()
    one_line(code, text, f"{fifo}: not a regular file (a FIFO)")
    assert time.monotonic() - started < 15


def test_a_fifo_or_a_device_given_as_a_file_is_not_called_missing(tiny_sd, capsys, fifo, no_model_load):
    for path in (fifo, Path("/dev/null")):
        kind = "a FIFO" if path == fifo else "a character device"
        one_line(*run(capsys, "generate", "-m", tiny_sd, "-p", "x", "-a", path), f"{path}: not a regular file ({kind})")
        one_line(*run(capsys, "show", path), f"{path}: not a regular file ({kind})")


def test_a_fifo_given_to_an_option_read_later_is_refused_before_the_model_loads(tiny_sd, tmp_path, capsys, fifo,
                                                                                no_model_load):
    """The options no later check of their own would find a FIFO in before the model loads: a model, a model's
    configs, one reference image among several."""
    save_images(torch.rand(1, 3, 16, 16) * 2 - 1, tmp_path / "refs", "me")
    for args in (("generate", "-m", fifo, "-p", "x"),
                 ("generate", "-m", tiny_sd, "--model-config", fifo, "-p", "x"),
                 ("train", "-m", tiny_sd, "-i", tmp_path / "refs", "-i", fifo, "-o", tmp_path / "o")):
        one_line(*run(capsys, *args), f"{fifo}: not a regular file (a FIFO)")
    assert not (tmp_path / "o").exists()


def test_a_library_read_of_a_fifo_says_what_it_is(fifo):
    import lowdim

    with pytest.raises(lowdim.LowdimError, match="not a regular file \\(a FIFO\\)"):
        lowdim.read_adapter(fifo)


# -------------------------------------------------------------------------------------------- a quoted ~ (AS5)


def test_a_quoted_tilde_is_the_home_folder(untrained_adapter, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    shutil.copy(untrained_adapter, home / "a.safetensors")
    code, text = run(capsys, "show", "~/a.safetensors")
    assert code == 0 and "lidb" in text, text
    code, text = run(capsys, "export", "~/a.safetensors", "-o", "~/e.safetensors")
    assert code == 0 and (home / "e.safetensors").is_file() and str(home / "e.safetensors") in text, text
    assert not (tmp_path / "~").exists()


def test_a_quoted_tilde_in_a_repeated_option_is_the_home_folder(tiny_sd, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    save_images(torch.rand(1, 3, 16, 16) * 2 - 1, home / "refs", "me")
    save_images(torch.rand(1, 3, 16, 16) * 2 - 1, home / "more", "me")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", "~/refs", "-i", "~/more", "--steps", "1", "-o", "~/o")
    assert code == 0 and (home / "o" / "adapter.safetensors").is_file(), text
    assert not (tmp_path / "~").exists()


# ----------------------------------------------------------------------- safetensors' own I/O error (a failing disk)


def test_a_safetensors_read_failing_on_the_disk_is_one_line(tiny_sd, capsys, monkeypatch):
    """safetensors reports the OS's error as its own SafetensorError, not an OSError; one raised outside lowdim's
    writes (diffusers reading a model's weights) is still the disk's failure, said in one line."""
    from safetensors import SafetensorError

    def failing_disk(*args, **kwargs):
        raise SafetensorError("Error while deserializing header: I/O error: Input/output error (os error 5)")

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", failing_disk)
    one_line(*run(capsys, "generate", "-m", tiny_sd, "-p", "x"),
             "a file could not be read or written (Input/output error)")


# ------------------------------------------------------------------- a stop stuck in a blocking call (AS4, PEP 475)

STUCK_STOP = """
import os, signal, sys
from lowdim_cli.errors import stop_on_signals
stop_on_signals()
for signum in (signal.SIGINT, signal.SIGTERM):  # each signal said once its handler is through, so the test sends
    def noted(number, frame, handle=signal.getsignal(signum)):  # the next only then: two fast ones may merge
        handle(number, frame)
        os.write(1, b"noted\\n")
    signal.signal(signum, noted)
read_end, write_end = os.pipe()
try:
    raise KeyboardInterrupt  # the first Ctrl-C, whose stop is now under way ...
except KeyboardInterrupt:
    try:
        print("stopping", flush=True)
        os.read(read_end, 1)  # ... and stuck in a call that never returns (a save to a hung disk)
    except KeyboardInterrupt:
        print("forced", flush=True)
"""


def in_blocking_call(child: subprocess.Popen) -> subprocess.Popen:
    """``child`` once it sleeps in its blocking call (its state in Linux's /proc), so that a signal lands there, not
    on its way in; where there is no /proc it may land just before the call, which the child takes the same way."""
    stat = Path(f"/proc/{child.pid}/stat")
    while stat.exists() and stat.read_text().rpartition(")")[2].split()[0] in ("R", "D"):  # running, or loading
        time.sleep(0.01)
    return child


@contextlib.contextmanager
def stuck_child(script: str) -> Iterator[subprocess.Popen]:
    """``script`` running, past its "stopping" line; killed after a minute, so a child that never says its next line
    fails the test (an empty line read) instead of hanging it. The minute decides nothing on a machine however busy:
    each signal is sent only once the child has said it handled the one before."""
    stuck = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    guard = threading.Timer(60, stuck.kill)
    guard.start()
    try:
        assert stuck.stdout.readline() == "stopping\n"
        yield stuck
    finally:
        guard.cancel()
        if stuck.poll() is None:
            stuck.kill()
        stuck.wait()


def test_a_third_signal_ends_a_stop_stuck_in_a_blocking_call():
    """Python retries a blocking call a signal interrupts (PEP 475); a stop under way notes a second Ctrl-C, so an
    impatient double press keeps its checkpoint; the third ends the stop, wherever it is stuck."""
    with stuck_child(STUCK_STOP) as stuck:
        for signum in (signal.SIGINT, signal.SIGTERM):
            in_blocking_call(stuck).send_signal(signum)
            assert stuck.stdout.readline() == "noted\n"  # the stop keeps what it keeps: nothing ended
        in_blocking_call(stuck).send_signal(signal.SIGINT)
        assert stuck.stdout.read() == "forced\n" and stuck.wait() == 0


STUCK_CLEANUP = STUCK_STOP + """
        os.read(read_end, 1)  # the forced stop's own cleanup, stuck on the same hung disk
"""


def test_a_fourth_signal_during_the_forced_stops_cleanup_quits_and_says_what_may_stay():
    """The third signal's cleanup can hang as the save did: a fourth leaves at once, exit 130, and the line no longer
    promises that nothing was left (the next run sweeps a temp place)."""
    with stuck_child(STUCK_CLEANUP) as stuck:
        for _ in range(2):
            in_blocking_call(stuck).send_signal(signal.SIGINT)
            assert stuck.stdout.readline() == "noted\n"
        in_blocking_call(stuck).send_signal(signal.SIGINT)
        assert stuck.stdout.readline() == "forced\n"
        in_blocking_call(stuck).send_signal(signal.SIGINT)  # stuck again, in the cleanup
        assert stuck.wait() == 130
        assert "Quit without cleaning up: a hidden .*.tmp place may be left" in stuck.stderr.read()
