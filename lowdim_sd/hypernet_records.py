"""What a hypernetwork file records of its training (``run_metadata``), and the runs that use it told where they
differ from it: another phrase at train-hypernet, another resolution at personalize and bench quality.

Split from ``lowdim_sd.hypertrain_io`` (which re-exports ``run_metadata`` and ``warn_about_another_phrase``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from lowdim.errors import LowdimError
from lowdim_sd.train import TrainConfig
from lowdim_sd.train_settings import DEFAULT_TOKEN
from lowdim_sd.weight_dataset import as_folders

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lowdim.hyper.storage import HypernetFile
    from lowdim.spaces.base import LayerSpec, Space
    from lowdim_sd.hypertrain import HyperTrainJob


def run_metadata(job: HyperTrainJob, index: dict, net: torch.nn.Module, settings: dict | None = None) -> dict:
    """What the hypernetwork file records of its training: the phrase its targets answer to (personalize
    finetunes and draws with it), the seed and checksum of the bases they live in, the pictures the targets were
    trained on (resolution, crop), the weight folders and any --extra-images by name only (a shared file should
    not carry its maker's paths), the run's --lr, --seed and --batch-size, and (given ``settings``, what a resume
    compares) its ``run_id``. The header digest personalize records then tells apart two runs that differ in any
    option or in their weight folders' identities and pictures."""
    from lowdim.hyper.storage import bases_checksum

    seed = int(index["seed"])
    # every head's, set as Module attributes (which torch types as Tensor | Module)
    space, layers = cast("Space", net.space), cast("Sequence[LayerSpec]", net.layers)
    return {"model": job.model, "layer_set": index["layer_set"], "alpha": job.alpha, "beta": job.beta,
            "adapter_seed": seed, "bases_checksum": bases_checksum(space, layers, seed),
            "prompt": index["config"].get("prompt", TrainConfig.prompt),
            "token": index["config"].get("token", DEFAULT_TOKEN),
            **targets_pictures(index),
            "weights": ", ".join(folder.resolve().name for folder in as_folders(job.weights)),
            **({"extra_images": ", ".join(folder.resolve().name for folder in job.extra_images)}
               if job.extra_images else {}),
            "learning_rate": job.learning_rate, "seed": job.seed, "batch_size": job.batch_size,
            **({"run_id": run_id(settings)} if settings is not None else {})}


def run_id(settings: dict) -> str:
    """16 hex digits of sha256 over a run's settings (``hypertrain_resume.resume_settings``: every option a resume
    must repeat, and each weight folder's and extra picture's digest): the same for a run and its resumes, so a
    resumed run's file is byte for byte an uninterrupted one's, and another for a run with other options or data.
    Not random: two runs alike in all of that train the same network."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def targets_pictures(index: dict) -> dict:
    """The side (px) and face crop of the pictures the weight folder's θ were trained on: a run at another side
    starts from a prediction for other pictures. An index without a side records none (nothing to compare)."""
    from lowdim_sd.weight_index import with_crop_defaults

    side = index.get("resolution")
    crop = with_crop_defaults(index.get("config", {}))
    record: dict[str, Any] = {"resolution": side} if isinstance(side, int) and not isinstance(side, bool) else {}
    record["crop"] = bool(crop["crop"])
    if crop["crop"]:
        record["crop_margin"] = crop["crop_margin"]
    return record


def warn_about_another_resolution(hypernet: HypernetFile, side: int | None) -> None:
    """One line when a run's pictures are not the side the network's targets were precomputed at: not refused, as
    the paper's own recipe precomputes small (256 px on SD1.5) and personalizes at the model's side (512)."""
    trained = hypernet.stored.get("extra", {}).get("resolution")
    if side is None or not isinstance(trained, int) or trained == side:
        return  # a file from before the record (the shipped TinyFaces network) says nothing
    warnings.warn(f"{hypernet.path} learned from weights precomputed at {trained} px; this run is at {side} px, "
                  f"where its prediction may fit less well", stacklevel=2)


def model_side(model: str) -> int | None:
    """The side a model draws and personalizes at by default (its UNet's ``sample_size`` times the VAE's scale),
    read from its config files without loading it: a folder's, or a hub model's in the local cache. None where
    those are not at hand (a single-file checkpoint, a model not downloaded yet)."""
    from lowdim.paths import expand_user
    from lowdim_sd.model_names import name_and_source
    from lowdim_sd.weights_folder import read_config_json

    source = name_and_source(model, refuse_typos=False)[1]
    try:
        unet, vae = (_config_file(source, part, expand_user) for part in ("unet", "vae"))
        if unet is None:
            return None
        size = read_config_json(unet).get("sample_size")
        channels = read_config_json(vae).get("block_out_channels") if vae is not None else None
    except (LowdimError, OSError, ValueError):  # the load names what is wrong with the model
        return None
    if not isinstance(size, int) or isinstance(size, bool):
        return None
    return size * 2 ** (len(channels) - 1) if isinstance(channels, list) and channels else size * 8


def _config_file(source: str, part: str, expand_user) -> Path | None:
    folder = expand_user(source)
    if folder.is_dir():
        path = folder / part / "config.json"
        return path if path.is_file() else None
    if source.count("/") != 1:  # not a hub id
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source, f"{part}/config.json")
    return Path(found) if isinstance(found, str) else None


def warn_about_another_phrase(job: HyperTrainJob) -> None:
    """--prompt and --token shape only the diffusion term: the file records the precompute's phrase, the one
    its targets answer to and personalize uses. Said once, before training, rather than found in the images."""
    from lowdim_sd.weight_index import read_index

    asked = {"prompt": job.prompt, "token": job.token}
    if not any(asked.values()):
        return
    folder = as_folders(job.weights)[0]
    try:
        config = read_index(folder).get("config", {})
    except (LowdimError, OSError, ValueError):  # the dataset's own reading names what is wrong
        return
    for name, value in asked.items():
        recorded = config.get(name) or {"prompt": TrainConfig.prompt, "token": DEFAULT_TOKEN}[name]
        if value is None or value == recorded:
            continue
        use = "only the diffusion term's prompt" if job.alpha > 0 else "nothing: --alpha 0 has no diffusion term"
        warnings.warn(f"--{name} {value!r} changes {use}; the hypernetwork records {recorded!r}, the {name} its "
                      f"targets in {folder} were trained with, and personalize uses that", stacklevel=2)
