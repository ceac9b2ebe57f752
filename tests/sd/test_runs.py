"""The run skeleton (``lowdim_sd.runs``) as users meet it: Ctrl-C, locks, unusable --out, stray temps, overwrites."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from cli_train_runs import interrupt_at, reference_pictures, run  # noqa: F401  (a fixture: refs)
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim_sd import runs, stopping
from lowdim_sd import train as engine

pytestmark = pytest.mark.usefixtures("one_thread")


def flags_named(text: str) -> set[str]:
    return set(re.findall(r"(--[a-z][a-z-]+)", text))


def assert_flags_exist(capsys, command: str, text: str) -> None:
    """Every flag a message tells the user to pass is one the command has."""
    code, help_text = run(capsys, command, "--help")
    assert code == 0
    assert flags_named(text) <= flags_named(help_text), text


# ----------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_in_train_exits_130_says_what_was_kept_and_how_to_resume(tiny_sd, refs, tmp_path, capsys,
                                                                       monkeypatch):
    interrupt_at(monkeypatch, 2)
    args = ("train", "-m", tiny_sd, "-i", refs, "--steps", 3, "--out", tmp_path / "o")
    code, text = run(capsys, *args)
    assert code == 130 and "Traceback" not in text
    assert "Interrupted at step 2; checkpoint saved to" in text and "--resume" in text
    assert_flags_exist(capsys, "train", text)
    assert not (tmp_path / "o" / runs.LOCK).exists()  # the lock goes with the run
    monkeypatch.undo()
    code, text = run(capsys, *args, "--resume")
    assert code == 0 and "1 step in" in text


def test_ctrl_c_in_personalize_says_rerun_not_a_flag_it_lacks(tiny_sd, refs, tmp_path, capsys, monkeypatch):
    interrupt_at(monkeypatch, 1)
    code, text = run(capsys, "personalize", "-m", tiny_sd, "-i", sorted(refs.iterdir())[0], "--steps", 2,
                     "--no-preview", "--no-crop", "--out", tmp_path / "p")
    assert code == 130 and "Traceback" not in text
    assert "nothing was kept; rerun the same command" in text and "--resume" not in text
    assert not (tmp_path / "p" / "checkpoints").exists()  # nothing could resume one


def test_ctrl_c_in_precompute_keeps_the_done_identities_and_says_rerun(tiny_sd, tmp_path, capsys, monkeypatch):
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    save_images(images, tmp_path / "faces", "person")
    calls = []
    real = engine.denoising_losses

    def stop_in_the_second_batch(m, s, c, step, *a, **k):
        calls.append(step)
        if len(calls) == 3:  # the first batch (2 identities, 2 steps) is done and in the index
            raise KeyboardInterrupt
        return real(m, s, c, step, *a, **k)

    monkeypatch.setattr(engine, "denoising_losses", stop_in_the_second_batch)
    args = ("precompute", "-m", tiny_sd, "-i", tmp_path / "faces", "-o", tmp_path / "w", "--steps", 2,
            "--batch-subjects", 2, "--no-crop")
    code, text = run(capsys, *args)
    assert code == 130 and "Traceback" not in text
    assert "2 are kept in" in text and "rerun the same command to continue" in text
    assert_flags_exist(capsys, "precompute", text)
    monkeypatch.undo()
    code, text = run(capsys, *args)
    assert code == 0 and "trained 1 identity into" in text and "skipped 2" in text


def test_ctrl_c_in_any_other_command_exits_130(tiny_sd, tmp_path, capsys, monkeypatch):
    import lowdim_sd.loading

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", stop)
    code, text = run(capsys, "generate", "-m", tiny_sd, "-p", "a [V] face", "-o", tmp_path / "g")
    assert code == 130 and "Interrupted" in text and "Traceback" not in text


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_anything_is_kept_says_the_plain_interrupted_line(tiny_sd, tmp_path, capsys, monkeypatch,
                                                                          signum):
    import lowdim_sd.loading

    def stop(*args, **kwargs):  # the `lowdim` script's handler, as the signal lands while the model loads
        stopping.request(signum)

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", stop)
    try:
        code, text = run(capsys, "generate", "-m", tiny_sd, "-p", "a [V] face", "-o", tmp_path / "g")
    finally:
        stopping.withdraw()
    assert code == 130 and text == "Interrupted. Nothing half-written was left behind."


# ------------------------------------------------------------------------------------------ the lock


def write_lock(folder, pid: int, host: str | None = None, command: str = "lowdim train -o x") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / runs.LOCK).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                "command": command, "started": 0}))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_run_on_the_same_out_is_refused_naming_the_holder(tiny_sd, refs, tmp_path, capsys, monkeypatch):
    import lowdim_sd.loading

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    write_lock(tmp_path / "o", os.getppid(), command="lowdim train -m sd15 -o o")
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--out", tmp_path / "o")
    assert code == 1 and f"in use by another run (pid {os.getppid()} on {socket.gethostname()}: lowdim train -m " \
                          f"sd15 -o o)" in text
    assert (tmp_path / "o" / runs.LOCK).exists()  # still the holder's


def stop_at_model_load(monkeypatch) -> None:
    import lowdim_sd.loading

    def fail(*args, **kwargs):
        raise lowdim_sd.loading.ModelLoadError("stopped here by the test")

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", fail)


def test_a_run_that_fails_before_writing_leaves_no_empty_out_and_keeps_a_users_folder(tiny_sd, refs, tmp_path,
                                                                                       capsys, monkeypatch):
    """A failed first try (a model that does not load) must not leave an empty --out behind for every typo; a
    folder the user made beforehand stays, empty or not."""
    stop_at_model_load(monkeypatch)
    (tmp_path / "made by the user").mkdir()
    for out in (tmp_path / "new", tmp_path / "made by the user"):
        code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--out", out)
        assert code == 1 and "stopped here by the test" in text
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "made by the user").is_dir() and not any((tmp_path / "made by the user").iterdir())


def test_a_stale_lock_of_a_killed_run_is_taken_over_and_released(tiny_sd, refs, tmp_path, capsys, monkeypatch):
    write_lock(tmp_path / "o", dead_pid())
    stop_at_model_load(monkeypatch)
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--out", tmp_path / "o")
    assert code == 1 and "taking over the lock of a run that ended without releasing it" in text
    assert "stopped here by the test" in text  # it got past the lock
    assert not (tmp_path / "o" / runs.LOCK).exists()


def test_a_lock_held_elsewhere_or_being_taken_is_respected(tmp_path):
    write_lock(tmp_path / "a", dead_pid(), host="another-machine")  # its pid cannot be probed from here
    with pytest.raises(lowdim.LowdimError, match="another-machine.*delete .*lowdim.lock"), \
            runs.output_folder(tmp_path / "a"):
        pass
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / runs.LOCK).write_text("")  # a run between creating the lock and writing it
    with pytest.raises(lowdim.LowdimError, match="a run that is starting"), runs.output_folder(tmp_path / "b"):
        pass


def test_an_empty_lock_older_than_the_grace_is_taken_over(tmp_path):
    """A run that died between creating the lock and writing it leaves an empty one: past the grace period the
    folder is free again, not held forever by a run that is 'starting'."""
    from lowdim_sd import run_lock

    (tmp_path / "o").mkdir()
    lock = tmp_path / "o" / runs.LOCK
    lock.write_text("")
    os.utime(lock, (time.time() - run_lock.LOCK_GRACE_SECONDS - 60,) * 2)
    taken = r"taking over the lock of a run that ended without releasing it \(a run that stopped as it started\)"
    with pytest.warns(UserWarning, match=taken), runs.output_folder(tmp_path / "o"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_a_run_that_ends_leaves_the_lock_a_later_run_took_over(tmp_path):
    """Run A was taken for dead and run B took over its --out: A ending must not free the folder while B writes,
    or a third run could start on it and interleave its checkpoints with B's."""
    with runs.output_folder(tmp_path / "o"):
        write_lock(tmp_path / "o", os.getppid(), command="lowdim train -o o (the later run)")
    later = json.loads((tmp_path / "o" / runs.LOCK).read_text())
    assert later["command"] == "lowdim train -o o (the later run)"
    assert runs.folder_in_use(tmp_path / "o")


# ------------------------------------------------------------------------------------- unusable --out


@pytest.mark.parametrize("case", ["file", "under a file", "read-only", "full"])
def test_an_unusable_out_is_one_line_before_the_model_loads(tiny_sd, refs, tmp_path, capsys, monkeypatch, case):
    import errno
    import pathlib
    import shutil

    import lowdim_sd.loading

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "file").write_text("x")
    out = {"file": tmp_path / "file", "under a file": tmp_path / "file" / "o"}.get(case, tmp_path / "o")
    if case == "read-only":  # root ignores permission bits: a read-only mount is what it meets
        def refuse(self, data):
            raise OSError(errno.EROFS, "Read-only file system")
        monkeypatch.setattr(pathlib.Path, "write_bytes", refuse)
    if case == "full":
        monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--out", out)
    generating = run(capsys, "generate", "-m", tiny_sd, "-p", "a [V] face", "--out", out)
    expected = {"file": "a file, where a folder is needed", "under a file": "not writable (Not a directory)",
                "read-only": "not writable (Read-only file system)", "full": "0.0 MB free, the run needs about"}[case]
    assert code == 1 and expected in text and "Traceback" not in text and text.count("Error:") == 1
    assert generating[0] == 1 and (expected in generating[1] or case == "file")  # generate says "a file" its way


def test_a_folder_target_under_a_read_only_folder_is_one_line_before_the_work(tmp_path, monkeypatch):
    """eval, bench and merge --format diffusers check their --out folder this way before hours of work, which a
    read-only place would otherwise throw away when the results are written. (Root ignores permission bits, so
    the folder's read-only answer is given by os.access here.)"""
    read_only = tmp_path / "shared"
    read_only.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **k: path != read_only and real(path, mode, **k))
    with pytest.raises(lowdim.LowdimError, match=re.escape(f"--out {read_only / 'results'}: not writable "
                                                           f"({read_only} is read-only)")):
        runs.check_folder_target(read_only / "results")
    assert not (read_only / "results").exists()
    runs.check_folder_target(tmp_path / "mine" / "results")  # a writable place passes, and is not made yet
    assert not (tmp_path / "mine").exists()


def test_full_disk_is_found_before_training_once_the_sizes_are_known(tiny_sd, refs, tmp_path, capsys,
                                                                       monkeypatch):
    import shutil

    calls = []
    monkeypatch.setattr(engine, "_one_step", lambda *a: calls.append(1) or pytest.fail("training started"))
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=2 * 2**20))
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--out", tmp_path / "o", "--full")
    assert code == 1 and "2.0 MB free, the run needs about" in text and not calls  # a UNet and AdamW's moments


def test_stray_temp_files_of_a_crashed_write_are_removed_by_the_next_run(tiny_sd, refs, tmp_path, capsys,
                                                                         monkeypatch):
    step = tmp_path / "o" / "checkpoints" / "step-000002"
    step.mkdir(parents=True)
    strays = [tmp_path / "o" / ".adapter.safetensors.k2j3_9ab.tmp", step / ".optimizer.safetensors.x81qq0zm.tmp"]
    for stray in strays:
        stray.write_bytes(b"half")
        os.utime(stray, (time.time() - 7200,) * 2)  # a killed write's, hours ago
    # Of the same shape, kept: a write of another program going on now, and a user's file of another kind.
    kept = [tmp_path / "o" / ".settings.json.q1w2e3r4.tmp", tmp_path / "o" / ".notes.txt.a1b2c3d4.tmp"]
    for other in kept:
        other.write_text("not a killed write of lowdim's")
    os.utime(kept[1], (time.time() - 7200,) * 2)
    (tmp_path / "o" / "keep.tmp").write_text("not ours")
    (tmp_path / "o" / "photos").mkdir()
    (tmp_path / "o" / "photos" / ".draft.png.a1b2c3d4.tmp").write_text("not in a folder lowdim writes")
    stop_at_model_load(monkeypatch)
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--out", tmp_path / "o", "--resume")
    assert code == 1 and "stopped here by the test" in text
    assert not any(stray.exists() for stray in strays)
    assert (tmp_path / "o" / "keep.tmp").exists() and (tmp_path / "o" / "photos" / ".draft.png.a1b2c3d4.tmp").exists()
    assert all(other.exists() for other in kept)


# ----------------------------------------------------------------------------------------- overwrites


def test_train_refuses_to_overwrite_an_adapter_or_restart_on_checkpoints_without_overwrite(tiny_sd, refs, tmp_path,
                                                                                          capsys):
    args = ("train", "-m", tiny_sd, "-i", refs, "--steps", 1, "--out", tmp_path / "o")
    assert run(capsys, *args, "--checkpoint-every", 1)[0] == 0
    before = (tmp_path / "o" / "adapter.safetensors").read_bytes()
    code, text = run(capsys, *args, "--seed", 3)
    assert code == 1 and "adapter.safetensors: already exists; pass --overwrite" in text
    assert (tmp_path / "o" / "adapter.safetensors").read_bytes() == before
    (tmp_path / "o" / "adapter.safetensors").unlink()
    code, text = run(capsys, *args, "--seed", 3)
    assert code == 1 and "holds checkpoints of an earlier run" in text and "--overwrite to start over" in text
    assert_flags_exist(capsys, "train", text)
    code, text = run(capsys, *args, "--seed", 3, "--overwrite")
    # the old run's are gone with it: what is there is the new run's end (a later --resume goes on from it)
    kept = sorted((tmp_path / "o" / "checkpoints").iterdir())
    assert code == 0 and [step.name for step in kept] == ["step-000001"]
    assert json.loads((kept[0] / "state.json").read_text())["settings"]["seed"] == 3


def test_personalize_and_export_refuse_to_overwrite_without_overwrite(tiny_sd, refs, tmp_path, capsys):
    args = ("personalize", "-m", tiny_sd, "-i", sorted(refs.iterdir())[0], "--steps", 1, "--no-preview",
            "--no-crop", "--out", tmp_path / "p")
    assert run(capsys, *args)[0] == 0
    code, text = run(capsys, *args, "--export", "kohya")
    assert code == 1 and "adapter.safetensors: already exists; pass --overwrite" in text
    assert not (tmp_path / "p" / "adapter.kohya.safetensors").exists()
    assert run(capsys, *args, "--export", "kohya", "--overwrite")[0] == 0
    adapter = tmp_path / "p" / "adapter.safetensors"
    code, text = run(capsys, "export", adapter, "--format", "kohya")
    assert code == 1 and "adapter.kohya.safetensors: already exists; pass --overwrite" in text and "-o" in text
    assert run(capsys, "export", adapter, "--format", "kohya", "--overwrite")[0] == 0
    code, text = run(capsys, "export", adapter, "-o", tmp_path / "p" / "adapter.kohya.safetensors")
    assert code == 1 and "already exists" in text


@pytest.mark.parametrize("terminal", [True, False])
def test_a_transient_bar_draws_on_a_terminal_and_leaves_a_log_untouched(terminal):
    import io

    from rich.console import Console

    from lowdim_sd import runs

    console = Console(file=io.StringIO(), force_terminal=terminal, width=80)
    heard = []
    with runs.listen(lambda label, done, total: heard.append(done)), \
            runs.progress(3, "drawing", loss=False, transient=True, console=console) as advance:
        for _ in range(3):
            advance()
    assert heard == [1, 2, 3]
    assert (console.file.getvalue() != "") is terminal  # off a terminal: not even the empty line rich would leave


def test_ctrl_c_in_personalize_before_its_finetune_names_the_stage_and_says_rerun(tiny_sd, refs, tmp_path, capsys,
                                                                                  monkeypatch):
    """The model still loading (where a Ctrl-C usually lands on a big model): the line names the stage."""
    def loading(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("lowdim_sd.personalize.load_sd", loading)
    code, text = run(capsys, "personalize", "-m", tiny_sd, "-i", sorted(refs.iterdir())[0], "--steps", 2,
                     "--no-preview", "--no-crop", "--out", tmp_path / "p")
    assert code == 130 and "Traceback" not in text
    assert "Interrupted during 'load model'; nothing was kept; rerun the same command to start over" in text
