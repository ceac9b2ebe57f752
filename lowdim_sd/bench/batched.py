"""Adapter DreamBooth rows and Textual Inversion trained K identities at a time (the batched engine).

Per-sample adapters (or per-sample token vectors) give each identity exactly its own gradient and its
own noise draws, so the adapters equal those of one-at-a-time training (tests/sd/test_bench.py checks
this for both kinds), at a fraction of the cost. Each identity's adapter is stored as a file; its task
then only loads it, generates and scores. Its time is the batch's wall time divided by the identities in the batch.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lowdim import json_text
from lowdim.files import atomic_write
from lowdim_sd.bench.methods import Method, Personalized, get_method

if TYPE_CHECKING:
    from lowdim_sd.bench.quality_job import QualityJob, Task


def batchable(method: Method) -> bool:
    return (method.kind == "dreambooth" and not method.full) or method.kind == "ti"


def adapter_path(out: Path, method: str, identity: str) -> Path:
    return Path(out) / "adapters" / method / f"{identity}.safetensors"


def pretrained(out: Path, method: str, identity: str) -> Personalized | None:
    """The adapter an earlier task of this results folder already trained for ``method`` and ``identity``
    (a batched run, or the same row drawn another way), with its seconds per subject and its looks."""
    path = adapter_path(out, method, identity)
    timing = path.with_suffix(".json")
    if not (path.exists() and timing.exists()):
        return None
    try:
        record = json_text.loads(timing.read_text())
        seconds = float(record["seconds"])
    except (OSError, ValueError, KeyError, TypeError):  # damaged: the task trains its adapter again
        return None
    return Personalized(path, path.stat().st_size, seconds, record.get("looks", ""))


def keep_adapter(out: Path, method: str, identity: str, done: Personalized, device: str) -> None:
    """Store a personalized subject's adapter file, so that the row drawn another way (ROW@S, ROW@te=T) draws
    this file instead of training it again."""
    target = adapter_path(out, method, identity)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda temp: shutil.copyfile(done.kept_file(), temp))
    record = json.dumps({"seconds": done.seconds, "batch": 1, "device": device, "looks": done.looks})
    atomic_write(target.with_suffix(".json"), lambda temp: Path(temp).write_text(record))  # last: it marks it done


def train_batched(job: QualityJob, tasks: list[Task], batch_subjects: int) -> None:
    """Train every batchable task still without an adapter file, ``batch_subjects`` identities at a time."""
    for name in dict.fromkeys(t.method for t in tasks):
        method = get_method(name)
        pending = [t for t in tasks if t.method == name and pretrained(job.out, name, t.identity) is None]
        if not batchable(method):
            continue
        for start in range(0, len(pending), batch_subjects):
            _train_chunk(job, method, pending[start: start + batch_subjects])


def _train_chunk(job, method: Method, chunk: list) -> None:
    import lowdim
    from lowdim_sd.images import load_image
    from lowdim_sd.loading import load_sd
    from lowdim_sd.modes import adapter_trainable, resolve_layers
    from lowdim_sd.textual_inversion import prompt_token, ti_trainable, token_options
    from lowdim_sd.train import Subject, TrainConfig, train

    model = load_sd(job.model, job.device, job.dtype, job.model_config)
    subjects = [Subject(load_image(t.reference, model.resolution)[None], job.seed) for t in chunk]
    options = {"rank": method.rank} if method.space == "lora" else {}
    names = [t.identity for t in chunk] if len(chunk) > 1 else None
    work = Path(tempfile.mkdtemp(prefix=f"batch-{method.name}-", dir=job.out))
    try:
        started = time.perf_counter()
        space, token = lowdim.get_space(method.space, options), job.token
        if method.kind == "ti":  # the same recipe as methods._textual_inversion, K subjects' vectors at once
            trainable = ti_trainable(model, space, token=job.token, seed=job.seed, subject_names=names)
            vectors = token_options(space).vectors
            token = prompt_token(job.token, vectors)
        else:
            trainable = adapter_trainable(model, space, resolve_layers(None, job.model), seed=job.seed,
                                          subject_names=names, token=job.token)
        config = TrainConfig(steps=method.steps, learning_rate=method.learning_rate or 1e-4, token=token,
                             seed=job.seed)
        outputs = train(model, subjects, trainable, config, out_dir=work, progress=False).outputs
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        seconds = (time.perf_counter() - started) / len(chunk)
        for task, output in zip(chunk, outputs, strict=True):
            target = adapter_path(job.out, method.name, task.identity)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(output, target)
            target.with_suffix(".json").write_text(json.dumps({"seconds": seconds, "batch": len(chunk),
                                                               "device": str(model.device)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
