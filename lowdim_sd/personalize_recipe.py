"""What made a personalize adapter, as stored in its file's metadata ('extra'): enough to run it again."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lowdim_sd.recorded_paths import recorded_file
from lowdim_sd.train import TrainConfig

if TYPE_CHECKING:
    from lowdim.hyper.storage import HypernetFile
    from lowdim_sd.personalize import PersonalizeRun


def recipe(run: PersonalizeRun) -> dict:
    """What made this adapter, stored in its file: enough to run it again."""
    job, hypernet = run.job, None
    if run.hypernet is not None:
        hypernet = hypernet_record(run.hypernet, job.iterations, run.bases_seed)
    # Without a finetune (--only-hyper, or --steps 0 after a prediction) a rank or rate recorded would describe
    # a finetune that never ran; the file is the prediction alone, so it says only_hyper, as that run's does.
    finetune = {} if run.only_hyper else {"steps": run.steps, "learning_rate": run.learning_rate,
                                          "batch_size": run.batch_size, "rank": job.rank}
    made = {"made_by": "lowdim personalize", "image": job.image.name, "hypernet": hypernet,
            "only_hyper": run.only_hyper, **({"no_hyper": True} if job.no_hyper else {}), **finetune,
            "seed": run.seed, "crop": run.crop, "crop_margin": job.crop_margin, "face_index": job.face_index,
            # The same seed gives the same bytes only on as many CPU threads: a kernel's sums split over them.
            "threads": torch.get_num_threads()}
    if job.resolution is not None:  # only when asked: the model's own is implied by its name
        made["resolution"] = job.resolution
    if job.keep_styles:
        made["keep_styles"] = job.keep_styles
    if run.prompt != TrainConfig.prompt:  # the hypernetwork's training phrase
        made["prompt"] = run.prompt
    if run.describer is not None:
        made["looks"] = run.looks
    return made


def hypernet_record(hypernet: HypernetFile, iterations: int | None, bases_seed: int) -> dict:
    """Which hypernetwork predicted the start: the file (``recorded_file``: a user's by its absolute path, as every
    run's file has the same name; the one a model ships by its name and ``shipped_with``, the model, not the folder
    pip put it in), its ``digest`` (``HypernetFile.digest``: of its header, which records its config, layers, step
    and training run, --lr, --seed, --batch-size and run id included; not the file's sha256), and the refinement
    passes it ran (the network's own count where --iterations was left out). Adapters from before recorded the
    shipped network by its absolute path too, the digest as "sha256", the file's bare name, and null for
    iterations left out."""
    used = iterations if iterations is not None else hypernet.stored["hyper_config"].get("iterations")
    return {**recorded_file(hypernet.path), "digest": hypernet.digest, "iterations": used, "bases_seed": bases_seed}
