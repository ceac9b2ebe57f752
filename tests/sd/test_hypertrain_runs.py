"""A train-hypernet run's life: resume exactly or refuse to, stops that keep a checkpoint (Ctrl-C, SIGTERM, out of
memory, a time budget), and settings or inputs refused before anything is written."""

from __future__ import annotations

import json

import pytest
import torch
from hypertrain_jobs import HYPER, TINY_VIT, job, records  # tests/sd, on the path as pytest puts it
from safetensors.torch import load_file

import lowdim
from lowdim import option_words
from lowdim_cli.main import main
from lowdim_sd import checkpoints
from lowdim_sd.hypertrain import train_hypernet

pytestmark = pytest.mark.usefixtures("one_thread")


def test_resume_continues_from_the_checkpoint_exactly(weights, tmp_path):
    whole = train_hypernet(job(weights, tmp_path / "a", steps=4), progress=False)
    train_hypernet(job(weights, tmp_path / "b", steps=2), progress=False)
    assert (tmp_path / "b" / "checkpoints" / "step-000002" / "state.json").is_file()
    rest = train_hypernet(job(weights, tmp_path / "b", steps=4, resume=True), progress=False)
    assert rest.start_step == 2 and rest.losses == whole.losses[2:]
    expected, got = load_file(str(whole.path)), load_file(str(rest.path))
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert [r["step"] for r in records(rest.metrics, "train")] == [1, 2, 3, 4]
    with pytest.raises(lowdim.LowdimError, match="checkpoints of an earlier run.*resume=True"):
        train_hypernet(job(weights, tmp_path / "b", steps=4), progress=False)


def test_a_resume_survives_a_log_cut_short_and_names_a_broken_split(weights, tmp_path):
    train_hypernet(job(weights, tmp_path / "b", steps=2), progress=False)
    log = tmp_path / "b" / "metrics.jsonl"
    log.write_text(log.read_text() + '{"kind": "train", "step": 3, "lo')  # a kill in the middle of a line
    rest = train_hypernet(job(weights, tmp_path / "b", steps=3, resume=True), progress=False)
    assert [r["step"] for r in records(rest.metrics, "train")] == [1, 2, 3]
    (tmp_path / "b" / "split.json").write_text('{"train": ["a"')
    with pytest.raises(lowdim.LowdimError, match=r"split.json: it cannot be read .*delete it to draw the split again"):
        train_hypernet(job(weights, tmp_path / "b", steps=4, resume=True), progress=False)
    (tmp_path / "b" / "split.json").write_text('{"train": "a", "val": []}')
    with pytest.raises(lowdim.LowdimError, match=r'split.json: it is not \{"train": \[names\]'):
        train_hypernet(job(weights, tmp_path / "b", steps=4, resume=True), progress=False)


def test_a_resume_with_other_training_options_is_refused_naming_them(weights, tmp_path):
    train_hypernet(job(weights, tmp_path / "r", steps=2), progress=False)
    with pytest.raises(lowdim.LowdimError, match=r"other settings: HyperTrainJob\(alpha=\.\.\.\) "
                                                 r"\(1.0 there, 0.0 now\); "
                                                 r"HyperTrainJob\(learning_rate=\.\.\.\) \(0.0001 there, 0.01 now\)"):
        train_hypernet(job(weights, tmp_path / "r", steps=4, alpha=0.0, learning_rate=1e-2, resume=True),
                       progress=False)
    assert train_hypernet(job(weights, tmp_path / "r", steps=4, resume=True), progress=False).start_step == 2


def test_a_finished_run_keeps_its_last_step_to_extend_from_and_drops_a_stale_stop_checkpoint(weights, tmp_path):
    train_hypernet(job(weights, tmp_path / "e", steps=3), progress=False)  # checkpoints every 2: at 2, then 3
    assert train_hypernet(job(weights, tmp_path / "e", steps=4, resume=True), progress=False).start_step == 3
    from lowdim_sd import checkpoints

    train_hypernet(job(weights, tmp_path / "s", steps=2), progress=False)  # as a Ctrl-C would leave step 2
    finished = train_hypernet(job(weights, tmp_path / "s", steps=3, checkpoint_every=0, resume=True), progress=False)
    assert finished.start_step == 2 and checkpoints.latest(tmp_path / "s") is None  # nothing to go back to
    with pytest.raises(lowdim.LowdimError, match="holds a finished hypernetwork and no checkpoint to resume from"):
        train_hypernet(job(weights, tmp_path / "s", steps=4, checkpoint_every=0, resume=True), progress=False)


@pytest.mark.parametrize(("options", "message"), [
    ({"max_minutes": 0}, "--max-minutes must be > 0, got 0"),
    ({"extra_batch_size": 0, "extra_images": ["x"]}, "--extra-batch-size must be >= 1"),
    ({"val_fraction": -0.1, "val_identities": None}, "--val-fraction must be in \\[0, 1\\)"),
    ({"mixed_precision": "fp8"}, "--mixed-precision must be one of no, fp16, bf16, got 'fp8'"),
])
def test_settings_no_run_can_use_are_one_line_before_anything_is_written(weights, tmp_path, options, message):
    with option_words.command_line(), pytest.raises(lowdim.LowdimError, match=message):  # the CLI's words
        train_hypernet(job(weights, tmp_path / "bad", **options), progress=False)
    assert not (tmp_path / "bad").exists()


def test_a_training_image_gone_since_precompute_stops_the_run_before_its_first_step(weight_folders, tmp_path):
    folder = weight_folders(tmp_path / "data", "gone", 3, seed=4)
    from lowdim_sd.weight_dataset import WeightDataset

    dataset = WeightDataset(folder)
    gone = dataset.image_path(0)
    gone.unlink()
    with pytest.raises(lowdim.LowdimError, match=f"1 of the .* training images? is gone, e.g. {gone}"):
        train_hypernet(job(folder, tmp_path / "h", val_identities=0), progress=False)
    assert not list((tmp_path / "h").glob("checkpoints/*"))


def test_identities_moved_since_precompute_are_found_with_image_root(weight_folders, tmp_path):
    folder = weight_folders(tmp_path / "data", "moved", 3, seed=4)
    images = tmp_path / "data" / "faces-moved"
    images.rename(tmp_path / "elsewhere")
    with pytest.raises(lowdim.LowdimError, match="pass image_root with the folder they moved to"):
        train_hypernet(job(folder, tmp_path / "a", val_identities=0), progress=False)
    result = train_hypernet(job(folder, tmp_path / "b", val_identities=0, steps=1, image_root=tmp_path / "elsewhere"),
                            progress=False)
    assert result.path.is_file()


def test_other_pictures_under_the_same_names_are_refused_before_training(weight_folders, tmp_path):
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    folder = weight_folders(tmp_path / "data", "w", 3, seed=4)
    others = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(99)) * 2 - 1
    save_images(others, tmp_path / "others", "person")  # the same file names, other faces
    with pytest.raises(lowdim.LowdimError, match=r"3 of the 3 identities' pictures in .*others are not those their "
                                                 r"weights were trained on"):
        train_hypernet(job(folder, tmp_path / "a", val_identities=0, image_root=tmp_path / "others"), progress=False)
    assert not (tmp_path / "a" / "hypernet.safetensors").exists()


def test_a_model_with_other_layers_than_the_weights_is_refused_before_training(weights, tmp_path):
    with pytest.raises(lowdim.LowdimError, match=r"HyperTrainJob\(model='tinyfaces'\): its .* layers \(\d+\) are not "
                                                 r"those the weights were made on .*leave model out"):
        train_hypernet(job(weights, tmp_path / "m", model="tinyfaces"), progress=False)
    assert not (tmp_path / "m" / "hypernet.safetensors").exists()


def test_an_encoder_that_cannot_load_stops_the_run_before_it_writes_a_split(weights, tmp_path):
    hyper = {k: v for k, v in HYPER.items() if k != "encoder_config"}
    with pytest.raises(lowdim.LowdimError, match="image encoder folder .*nowhere.* not found"):
        train_hypernet(job(weights, tmp_path / "n", hyper={**hyper, "encoder": str(tmp_path / "nowhere")}),
                       progress=False)
    assert not (tmp_path / "n" / "split.json").exists()


@pytest.mark.slow
def test_sigterm_stops_a_run_as_ctrl_c_does_keeping_a_checkpoint(weights, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "t"
    command = [sys.executable, "-m", "lowdim", "train-hypernet", "-w", str(weights), "-o", str(out),
               "--encoder-config", json.dumps(TINY_VIT), "--width", "16", "--heads", "2", "--iterations", "1",
               "--steps", "100000", "--batch-size", "2", "--alpha", "0", "--checkpoint-every", "0", "--log-every", "1"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        if (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count("\n") >= 2:
            break
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)  # what a cluster sends to preempt a job
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "checkpoint saved to" in " ".join(err.split())
    assert checkpoints.latest(out) is not None


def test_a_time_budget_stops_early_validates_and_saves(weights, tmp_path):
    from safetensors import safe_open

    result = train_hypernet(job(weights, tmp_path / "h", steps=50, max_minutes=1e-9, val_identities=1, val_every=7),
                            progress=False)
    assert len(result.losses) == 1  # the budget was spent after the first step
    assert records(result.metrics, "val")[-1]["step"] == 1
    with safe_open(str(result.path), "pt") as handle:
        assert json.loads(handle.metadata()["extra"])["steps"] == 1


def test_a_finished_run_without_checkpoints_is_not_overwritten(weights, tmp_path):
    train_hypernet(job(weights, tmp_path / "h", steps=1, checkpoint_every=0, val_identities=0), progress=False)
    for resume in (False, True):
        with pytest.raises(lowdim.LowdimError, match="holds a finished hypernetwork and no checkpoint"):
            train_hypernet(job(weights, tmp_path / "h", steps=2, checkpoint_every=0, val_identities=0,
                               resume=resume), progress=False)


@pytest.mark.parametrize("stop, code, said", [
    (KeyboardInterrupt(), 130, "Interrupted at step 1; checkpoint saved to"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), 1,
     "out of memory at step 1; checkpoint saved to"),
])
def test_a_stop_keeps_a_checkpoint_says_so_and_resume_continues_from_it(weights, tmp_path, capsys, monkeypatch,
                                                                       stop, code, said):
    import lowdim_sd.hypertrain as ht

    real, calls = ht.pair_losses, []

    def stop_in_step_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise stop
        return real(*args, **kwargs)

    monkeypatch.setattr(ht, "pair_losses", stop_in_step_2)
    args = ["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "h"), "--encoder-config", json.dumps(TINY_VIT),
            "--width", "16", "--heads", "2", "--iterations", "1", "--steps", "3", "--batch-size", "2",
            "--checkpoint-every", "0", "--alpha", "0"]
    assert main(args) == code
    text = " ".join(capsys.readouterr().err.split())
    assert said in text and "plus --resume" in text and "Traceback" not in text
    assert (tmp_path / "h" / "checkpoints" / "step-000001" / "state.json").is_file()
    if code == 1:
        assert "--batch-size" in text  # the CLI's hint of what to change
    monkeypatch.undo()
    assert main(args + ["--resume"]) == 0 and "2 steps in" in capsys.readouterr().out


@pytest.mark.parametrize(("options", "said"), [
    ({"extra_batch_size": 3}, "--extra-batch-size sizes the --extra-images batches: add --extra-images FOLDER"),
    ({"alpha": 0.0, "diffusion_target": "teacher"}, "--diffusion-target teacher shapes the diffusion term, which "
                                                    "--alpha 0 turns off"),
    ({"alpha": 0.0, "diffusion_iterates": "last"}, "--diffusion-iterates last shapes the diffusion term"),
    ({"key_steps": 5}, "--key-steps trains the keys learned from --key-pairs: add --key-pairs FOLDER"),
])
def test_a_flag_whose_part_of_the_run_is_off_is_refused_before_anything_loads(weights, tmp_path, options, said):
    with option_words.command_line(), pytest.raises(lowdim.LowdimError, match=said):  # the CLI's words
        train_hypernet(job(weights, tmp_path / "h", **options), progress=False)
    assert not (tmp_path / "h").exists()


def test_a_resume_from_a_step_0_checkpoint_logs_step_0s_validation_once(weights, tmp_path, monkeypatch):
    import lowdim_sd.hypertrain as hypertrain
    from lowdim_sd import runs, stopping

    real, calls = hypertrain._Loop.validate, []

    def validate_then_stop(loop):  # a Ctrl-C right after the first validation: checkpointed at step 0
        real(loop)
        if not calls:
            calls.append(loop.step)
            stopping._requested.set()  # a signal noted as validation ended: the loop's first check raises it

    monkeypatch.setattr(hypertrain._Loop, "validate", validate_then_stop)
    with pytest.raises(runs.Interrupted):
        train_hypernet(job(weights, tmp_path / "z", steps=2), progress=False)
    monkeypatch.undo()
    rest = train_hypernet(job(weights, tmp_path / "z", steps=2, resume=True), progress=False)
    assert rest.start_step == 0 and [r["step"] for r in records(rest.metrics, "val")] == [0, 2]  # step 0 once
