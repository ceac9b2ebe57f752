"""Two CPU processes of one precompute or train-hypernet run, one of them (not the main one) failing: every process
stops within seconds, the main one with the failing process's line and a non-zero exit, no traceback; what was
kept stays resumable. Each run is bounded, so a run that hangs fails the test instead of the CI.

"Two machines" is what a launcher gives two processes on two hosts (torchrun --nnodes 2): the launcher's store
(here the test's own) and no agent that ends the other process when one fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from failing_process import CROP_LINE, PICTURE_LINE, STEP_LINE, WEIGHTS_LINE  # tests/sd, on the path as pytest puts it
from images_for_tests import save_images

pytestmark = pytest.mark.slow

HELPER = Path(__file__).with_name("failing_process.py")
BOUND = 150  # seconds for a whole run: imports and a tiny model take 10-30 s here (a busy machine), a hang forever
AFTER = 20  # seconds the main process may go on after the failing one ended: its stop, its line and its exit
PACKAGES = ":".join(p for p in (str(HELPER.parent), os.environ.get("PYTHONPATH")) if p)


@dataclass
class Ended:
    code: int
    err: str
    at: float = 0.0  # seconds after the start


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "FAIL_RANK": "1",
            "PYTHONPATH": PACKAGES, "COLUMNS": "400", **extra}


def _as_two_machines(cwd: Path, argv: list[str], **fail: str) -> tuple[Ended, Ended]:
    """One process a "machine", as torchrun's agents start them: rank, world and the agent's store in the env; the
    main process's end and the failing one's."""
    store = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    logs = [cwd / f"process-{rank}.err" for rank in (0, 1)]
    processes = [subprocess.Popen(
        [sys.executable, str(HELPER), *argv], cwd=cwd, stdout=subprocess.DEVNULL, stderr=log.open("w"),
        env=_env(RANK=str(rank), LOCAL_RANK="0", WORLD_SIZE="2", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                 MASTER_PORT=str(store.port), TORCHELASTIC_USE_AGENT_STORE="True", TORCHELASTIC_RUN_ID="test",
                 TORCHELASTIC_RESTART_COUNT="0", **fail)) for rank, log in enumerate(logs)]
    started, ends = time.monotonic(), {}
    try:
        while len(ends) < 2 and time.monotonic() - started < BOUND:
            ends.update({rank: time.monotonic() - started for rank, process in enumerate(processes)
                         if rank not in ends and process.poll() is not None})
            time.sleep(0.1)
    finally:
        for process in processes:
            process.kill()
    if len(ends) < 2:
        running = [f"process {rank + 1}" for rank in (0, 1) if rank not in ends]
        pytest.fail(f"{' and '.join(running)} of 2 still running after {BOUND} s")
    main, failing = (Ended(process.returncode, log.read_text(), ends[rank])
                     for rank, (process, log) in enumerate(zip(processes, logs, strict=True)))
    assert main.at - failing.at < AFTER, f"the main process ended {main.at - failing.at:.0f} s after the failing one"
    return main, failing


def _faces(folder: Path, count: int) -> Path:
    images = torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 2 - 1
    save_images(images, folder, "person")
    return folder


def _precompute(tiny_sd, faces: Path, out: Path, steps: int) -> list[str]:
    return ["precompute", "-m", str(tiny_sd), "-i", str(faces), "-o", str(out), "--steps", str(steps),
            "--batch-subjects", "1", "--no-crop", "--device", "cpu"]


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory) -> Path:
    """Four precomputed identities, made once for both train-hypernet tests: a run only reads them."""
    return weight_folders(tmp_path_factory.mktemp("hyperdata"), "weights", 4, seed=1)


def _said(ended: Ended) -> list[str]:
    return [line for line in ended.err.splitlines() if line.startswith("Error:")]


def test_precompute_whose_other_machine_fails_before_the_run_forms_does_not_wait_for_it(tiny_sd, tmp_path):
    faces = _faces(tmp_path / "faces", 2)
    main, failing = _as_two_machines(tmp_path, _precompute(tiny_sd, faces, tmp_path / "w", 2), FAIL_AT="crop")
    assert (failing.code, _said(failing)) == (1, [f"Error: process 2 of 2: {CROP_LINE}"])
    assert (main.code, _said(main)) == (1, [f"Error: process 2 of 2 failed: {CROP_LINE}"])
    assert "Traceback" not in main.err


def test_precompute_whose_other_machine_fails_mid_run_stops_within_seconds(tiny_sd, tmp_path):
    faces, out = _faces(tmp_path / "faces", 4), tmp_path / "w"
    # Process 1 alone would train its two identities for minutes (8000 steps); process 2 fails at its first picture.
    main, failing = _as_two_machines(tmp_path, _precompute(tiny_sd, faces, out, 8000), FAIL_AT="picture")
    assert (failing.code, _said(failing)) == (1, [f"Error: process 2 of 2: person_001.png: {PICTURE_LINE}"])
    assert main.code == 1 and "Traceback" not in main.err
    said = _said(main)
    # The steps of its batch in flight it kept, when the stop came after its first (their count is the race's)
    kept = (f"; it kept (\\d+) of 8000 steps of the batch in flight \\(person_000\\) in "
            f"{re.escape(str(out / '.batch-in-flight-p0'))}")
    line = re.fullmatch(re.escape(f"Error: process 2 of 2 failed: person_001.png: {PICTURE_LINE}; this process stopped "
                                  f"with it: interrupted during the first batch of process 1 of 2, so it added nothing "
                                  f"to {out} (the other processes' lines, if any, say what they kept)") +
                        f"(?:{kept})?" +
                        re.escape("; rerun the same command to continue: done identities are skipped") +
                        "(?:, and the batch resumes at step (\\d+))?", said[0]) if len(said) == 1 else None
    assert line is not None and line[1] == line[2], said


def test_train_hypernet_whose_other_machine_fails_before_the_run_forms_does_not_wait_for_it(weights, tmp_path):
    argv = ["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "h"), "--encoder-config", "tiny", "--width",
            "16", "--heads", "2", "--iterations", "2", "--steps", "2", "--batch-size", "1", "--device", "cpu"]
    main, failing = _as_two_machines(tmp_path, argv, FAIL_AT="weights")
    assert (failing.code, _said(failing)) == (1, [f"Error: process 2 of 2: {WEIGHTS_LINE}"])
    assert (main.code, _said(main)) == (1, [f"Error: process 2 of 2 failed: {WEIGHTS_LINE}"])
    assert "Traceback" not in main.err


def test_train_hypernet_under_torchrun_whose_other_process_fails_keeps_the_step_and_says_why(weights, tmp_path):
    out, logs = tmp_path / "h", tmp_path / "logs"
    argv = ["train-hypernet", "-w", str(weights), "-o", str(out), "--encoder-config", "tiny", "--width", "16",
            "--heads", "2", "--iterations", "2", "--steps", "6", "--batch-size", "1", "--checkpoint-every", "2",
            "--device", "cpu"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--log-dir", str(logs),
                "--redirects", "3", str(HELPER), *argv]
    started = time.monotonic()
    done = subprocess.run(launcher, cwd=tmp_path, env=_env(FAIL_AT="step", FAIL_STEP="4"), capture_output=True,
                          text=True, timeout=BOUND)
    assert done.returncode != 0 and time.monotonic() - started < BOUND
    main, failing = (Ended(0, next(logs.glob(f"*/attempt_0/{rank}/stderr.log")).read_text()) for rank in (0, 1))
    assert _said(failing) == [f"Error: process 2 of 2: step 4: {STEP_LINE}"]
    kept = out / "checkpoints" / "step-000003"
    assert _said(main) == [f"Error: process 2 of 2 failed: step 4: {STEP_LINE}; step 3 is saved to {kept}: the same "
                           f"command plus --resume continues from it"]
    assert "Traceback" not in main.err
    assert (kept / "hypernet.safetensors").is_file() and (out / "checkpoints" / "step-000002").is_dir()
    assert "exitcode  : -15" not in done.stderr  # the main process ended by itself, not by the launcher's SIGTERM
