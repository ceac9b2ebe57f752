"""The header of a precompute's ``index.json``: every field but ``identities``, which a resume compares
(``weight_index.done_identities``), and the early refusal of an --out made with other settings."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import lowdim
from lowdim_sd.face_inputs import crop_settings
from lowdim_sd.loading import canonical_model
from lowdim_sd.precompute_start import start_digest
from lowdim_sd.train import TrainConfig
from lowdim_sd.weight_index import FORMAT, FORMAT_VERSION, INDEX, done_identities, read_index

if TYPE_CHECKING:
    from lowdim.inject import LayerSet
    from lowdim.spaces.base import Space
    from lowdim_sd.loading import SDModel
    from lowdim_sd.precompute import PrecomputeJob

# TrainConfig fields left out of the index's "config": precompute trains without an output folder, so
# nothing is checkpointed and they cannot change θ. Every other field is recorded, new ones included.
# Not what makes a target: how a run checkpoints, how it launches the same steps (CUDA graphs), whether it
# recomputes activations (gradient checkpointing: θ is bit-identical, and the out-of-memory hint offers it to a
# resume), and personalize-only finetune options (one subject at a time).
NOT_RECORDED = ("checkpoint_every", "keep_checkpoints", "keep_styles", "style_prompts", "cuda_graphs",
                "gradient_checkpointing")


def refuse_other_settings_early(job: PrecomputeJob, config: TrainConfig, crop: bool) -> None:
    """An --init, or an --out made with other settings, refused before the model loads (seconds; minutes for
    SD1.5 on a CPU): the layers, the model's own resolution and the start's digest wait for the model."""
    from lowdim_sd.modes import resolve_layers
    from lowdim_sd.precompute_start import check_start_early

    space = lowdim.get_space(job.space, job.space_options)
    if job.init is not None:
        check_start_early(job.init, space, config.seed)
    out = job.out
    if not (out / INDEX).is_file():
        return
    existing = read_index(out)
    header = {key: value for key, value in index_header(job, config, None, space, resolve_layers(job.layers, job.model),
                                                        crop, None).items() if key not in ("layers", "resolution")}
    if job.resolution is not None:
        header["resolution"] = job.resolution
    if job.init is not None:  # its digest needs the model's layers: that it is there at all is checked now
        header["config"]["init"] = existing.get("config", {}).get("init", "an --init")
    done_identities(out, header, {key: existing.get(key) for key in header if key != "identities"})


def recorded_settings(config: TrainConfig, crop: bool, margin: float, face_index: int | None) -> dict:
    """The index's ``config``: the training options that shape θ, and the face crop (other pixels, other θ)."""
    options = {key: value for key, value in asdict(config).items() if key not in NOT_RECORDED}
    if options.get("optimizer") == "adamw":  # the default is left out, so folders made before it existed resume
        del options["optimizer"]
    return options | crop_settings(crop, margin, face_index)


def index_header(job: PrecomputeJob, config: TrainConfig, model: SDModel | None, space: Space, layer_set: LayerSet,
                 crop: bool, initial: dict | None = None) -> dict:
    """Every index field but ``identities``; those in ``IDENTITY_FIELDS`` must match to resume. Without a
    ``model`` (before it loads), the fields only it can tell are None."""
    from lowdim.sizing import layer_specs

    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "lowdim_version": lowdim.__version__,
        "model": canonical_model(job.model), "space": space.name, "space_config": space.config.to_dict(),
        "seed": config.seed,
        "layer_set": layer_set.name,
        "layers": [[s.name, s.out_features, s.in_features] for s in layer_specs(model.modules, layer_set)]
        if model is not None else None,
        "resolution": job.resolution or (model.resolution if model is not None else None),
        "root": str(job.identities.resolve()),
        "config": recorded_settings(config, crop, job.crop_margin, job.face_index)
        # Recorded only when on, so folders made before the option existed still resume.
        | ({"shared_noise": True} if job.shared_noise else {})
        | ({"init": start_digest(initial)} if initial is not None else {}),
        # Outside "config": not compared as a recipe (see done_identities), but a resume's errors name them.
        "dtype": _dtype_name(job, model),
    } | ({"init_path": {"given": str(job.init), "resolved": str(job.init.resolve())}}
         if job.init is not None else {})


def _dtype_name(job: PrecomputeJob, model: SDModel | None) -> str:
    """The precision θ trains in: the model's, or before it loads, the one --dtype and --device make it."""
    from lowdim_sd.devices import dtype_name, resolve_device, resolve_dtype

    return dtype_name(model.dtype if model is not None else resolve_dtype(job.dtype, resolve_device(job.device)))
