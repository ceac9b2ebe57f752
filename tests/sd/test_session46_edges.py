"""Edges of session 46's code no test reached (review BG's mutation audit): a sharded fp16-only model, a tokenizer
missing one of its two files, a cached hub repository that is no pipeline, reader marks across fork and hosts, two
claimed run names in a row, a negative --num-workers, train-hypernet's stop line inside an update, the merge's
space estimate for bf16 and its floor, and a stop raised in a finalizer said nothing of."""

from __future__ import annotations

import gc
import json
import os
import shutil
import socket
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from hypertrain_jobs import HYPER, job  # tests/sd, on the path as pytest puts it

from lowdim import option_words
from lowdim.errors import LowdimError
from lowdim_sd.loading import ModelLoadError, load_pipeline, load_sd
from lowdim_sd.run_lock import holder_record
from lowdim_sd.tiny import build_tiny_pipeline
from lowdim_sd.weight_readers import READERS, ReaderMark, live_readers

pytestmark = pytest.mark.usefixtures("one_thread")


def refusal(call) -> str:
    with pytest.raises(ModelLoadError) as refused:
        call()
    return str(refused.value)


# ------------------------------------------------------------------------------------- model folders (BG1, BG5, BG6)


def test_a_sharded_fp16_only_model_loads_in_the_dtype_asked(tmp_path):
    """SD1.5's fp16 variant is saved in shards (``diffusion_pytorch_model.fp16-00001-of-00002.safetensors``)."""
    folder = tmp_path / "pipe"
    build_tiny_pipeline(0).save_pretrained(folder, variant="fp16", max_shard_size="100KB")  # every part sharded
    for part, index in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                        ("text_encoder", "model")):
        assert (folder / part / f"{index}.safetensors.index.fp16.json").is_file()
    model = load_sd(folder, "cpu", "fp32")
    original = build_tiny_pipeline(0).unet.state_dict()
    loaded = model.pipe.unet.state_dict()
    assert model.pipe.unet.dtype == torch.float32
    assert all(torch.allclose(loaded[key], original[key], rtol=1e-3, atol=1e-4) for key in original)


def test_a_tokenizer_with_a_vocabulary_but_no_merges_is_named(tiny_sd, tmp_path):
    copied = Path(shutil.copytree(tiny_sd, tmp_path / "pipe"))
    (copied / "tokenizer" / "tokenizer.json").unlink()
    (copied / "tokenizer" / "vocab.json").write_text('{"a</w>": 0}')  # its merges.txt lost in the copy
    said = refusal(lambda: load_pipeline(str(copied), torch.float32))
    assert said.startswith(f"{copied / 'tokenizer'}: no tokenizer.json or vocab.json+merges.txt in it")


def test_a_cached_repository_that_is_no_pipeline_is_not_loaded_as_one_offline(tmp_path, monkeypatch):
    """A hub repository of single-file checkpoints in the cache, with no hub: the line for a hub id that cannot be
    loaded, not a raw FileNotFoundError for the model_index.json it never had."""
    from huggingface_hub import constants

    import lowdim.hub

    cache = tmp_path / "hf-cache"
    root = cache / "models--me--single-files"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("a" * 40)
    snapshot = root / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"not read")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(lowdim.hub, "hub_reachable", lambda *args: False)
    said = refusal(lambda: load_pipeline("me/single-files", torch.float32))
    assert said.startswith("could not load 'me/single-files'")


# ------------------------------------------------------------------------------------------ reader marks (BG2, BG7)


def test_a_forked_copy_collecting_its_dataset_leaves_the_parents_mark(tmp_path):
    """A DataLoader worker forked from train-hypernet holds a copy of the dataset and its finalizer: the parent's
    mark must stay while the parent reads, or a precompute may remove the shards under it."""
    # Both collections below walk only what this test makes: in a worker that has run hundreds of tests, walking
    # (and in the child, copying) every object of theirs took over a minute.
    gc.freeze()
    try:
        mark = ReaderMark(tmp_path)
        assert mark.path is not None and mark.path.is_file()
        child = os.fork()
        if child == 0:  # the worker: its copy collected, then gone
            del mark
            gc.collect()
            os._exit(0)
        os.waitpid(child, 0)
        assert mark.path.is_file()
        path = mark.path
        del mark
        gc.collect()
        assert not path.exists()  # the owner's own collection does remove it
    finally:
        gc.unfreeze()


def test_a_mark_of_another_host_with_our_pid_is_a_reader(tmp_path):
    """Two machines sharing a weight folder: a pid equal to ours on another host is another process."""
    (tmp_path / READERS).mkdir()
    other = {**holder_record(), "host": socket.gethostname() + "-other", "command": "lowdim train-hypernet"}
    (tmp_path / READERS / "theirs.json").write_text(json.dumps(other))
    readers = live_readers(tmp_path)
    assert len(readers) == 1 and readers[0].startswith(f"pid {os.getpid()} on {other['host']}: lowdim train-hypernet")


# -------------------------------------------------------------------------------------------- the ui's names (BG3)


def test_two_names_claimed_in_a_row_are_both_passed_over(tmp_path):
    from lowdim_sd.ui.run_folders import PARTIAL, publish_run

    (tmp_path / "me").mkdir()  # taken since this run's claim
    claims = [tmp_path / f".me-2{PARTIAL}", tmp_path / f".me-3{PARTIAL}"]  # two other servers' runs in flight
    for claim in claims:
        claim.mkdir()
    work = tmp_path / f".me{PARTIAL}"
    work.mkdir()
    (work / "adapter.safetensors").write_bytes(b"this run's adapter")
    assert publish_run(work, tmp_path, "me") == "me-4"
    assert (tmp_path / "me-4" / "adapter.safetensors").is_file() and all(claim.is_dir() for claim in claims)
    assert not (tmp_path / "me-3").exists()


# ---------------------------------------------------------------------------------------- train-hypernet (BG4, BG8)


def test_a_negative_num_workers_is_refused():
    from lowdim_sd.hypertrain import HyperTrainJob
    from lowdim_sd.hypertrain_checks import check_job

    bad = HyperTrainJob(weights="w", hyper=HYPER, cpu=True, num_workers=-1)
    with pytest.raises(LowdimError, match=r"^HyperTrainJob\(num_workers=\.\.\.\) must be >= 0, got -1$"):
        check_job(bad)
    with option_words.command_line(), pytest.raises(LowdimError, match=r"^--num-workers must be >= 0, got -1$"):
        check_job(bad)


def test_a_stop_inside_a_hypernet_update_names_the_last_periodic_checkpoint(weight_folders, tmp_path, monkeypatch):
    from lowdim_sd.hypertrain import train_hypernet

    weights = weight_folders(tmp_path / "data", "w", 4, seed=9)
    real, calls = torch.optim.AdamW.step, []

    def stopped_in_the_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the update of step 3, after the periodic checkpoint of step 2
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", stopped_in_the_third)
    with pytest.raises(KeyboardInterrupt) as stop:
        train_hypernet(job(weights, tmp_path / "h", steps=3, checkpoint_every=2), progress=False)
    said = str(stop.value)
    assert "inside the optimizer update of step 3, so no checkpoint of it was saved" in said, said
    assert said.endswith(f"continues from the last periodic one, {tmp_path / 'h' / 'checkpoints' / 'step-000002'}")


# ------------------------------------------------------------------------------------------- merge space (BG12)


def test_a_bf16_merge_is_estimated_at_two_bytes_a_value(tiny_sd):
    from lowdim_sd.merged_model import merged_bytes

    assert merged_bytes(tiny_sd, "bf16") == merged_bytes(tiny_sd, "fp16") == merged_bytes(tiny_sd, "fp32") // 2 > 0


def test_a_merge_of_a_model_not_downloaded_still_needs_the_least_room(tmp_path, monkeypatch):
    """Nothing here to estimate from (a hub id not fetched yet): a disk almost full is still refused."""
    import lowdim_sd.runs
    from lowdim_sd.merged_model import check_merge_space

    usage = namedtuple("usage", "total used free")
    free = lowdim_sd.runs.MIN_FREE_BYTES - 1
    monkeypatch.setattr(lowdim_sd.runs.shutil, "disk_usage", lambda path: usage(2**40, 2**40 - free, free))
    with pytest.raises(LowdimError, match=r"1\.0 MB free, the merge needs about 1\.0 MB"):
        check_merge_space(tmp_path / "m.safetensors", "nobody/not-downloaded", "fp32")


# ---------------------------------------------------------------------------------- a stop in a finalizer (BG13)

STOP_IN_FINALIZER = """
from lowdim_cli.errors import stop_on_signals
stop_on_signals()

class Stopped:
    def __del__(self):
        raise KeyboardInterrupt  # a signal's stop landing while a finalizer runs: the loop's check takes it up

class Broken:
    def __del__(self):
        raise ValueError("a finalizer's own bug")

Stopped()
Broken()
print("went on")
"""


def test_a_stop_raised_in_a_finalizer_prints_no_traceback_but_other_errors_still_do():
    ran = subprocess.run([sys.executable, "-c", STOP_IN_FINALIZER], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and ran.stdout == "went on\n", ran.stderr
    assert "KeyboardInterrupt" not in ran.stderr and "a finalizer's own bug" in ran.stderr, ran.stderr
