"""The header of a precompute's ``index.json``: every field but ``identities``, which a resume compares
(``weight_index.done_identities``), and the early refusal of an --out made with other settings."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import lowdim
from lowdim.option_words import either, on_the_command_line, option
from lowdim_sd.face_inputs import crop_settings
from lowdim_sd.loading import canonical_model
from lowdim_sd.precompute_start import start_digest
from lowdim_sd.resume_words import changed, leaves, rate_followed, switched
from lowdim_sd.train import TrainConfig
from lowdim_sd.weight_index import (
    FORMAT,
    FORMAT_VERSION,
    INDEX,
    Worded,
    done_identities,
    read_index,
    recorded,
    shown_init,
    shown_setting,
)

if TYPE_CHECKING:
    from lowdim.injection import LayerSet
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
    from lowdim_sd.precompute_start import check_start_early, refuse_a_hypernet_run

    space = lowdim.get_space(job.space, job.space_options)
    if job.init is not None:
        check_start_early(job.init, space, config.seed)
    out = job.out
    refuse_a_hypernet_run(out)
    if not (out / INDEX).is_file():
        return
    existing = read_index(out)
    header = {key: value for key, value in index_header(job, config, None, space, resolve_layers(job.layers, job.model),
                                                        crop, None).items() if key not in ("layers", "resolution")}
    if job.resolution is not None:
        header["resolution"] = job.resolution
    if job.init is not None:  # its digest needs the model's layers: that it is there at all is checked now
        header["config"]["init"] = existing.get("config", {}).get("init", "an --init")
    done_identities(out, header, {key: existing.get(key) for key in header if key != "identities"},
                    precompute_worded())


def check_new_margin(job: PrecomputeJob) -> None:
    """--crop-margin within ``faces.MAX_MARGIN`` for a new --out. An --out that holds an index compares the margin it
    records instead (``refuse_other_settings_early``, else ``done_identities``): one recorded past the bound by a
    lowdim before it extends at that margin, and any other margin is one of the header's difference lines."""
    from lowdim_sd.faces import check_crop_margin

    out = Path(job.out)
    if not (out / INDEX).is_file() and not any(out.glob("index-p*.json")):
        check_crop_margin(job.crop_margin, option("crop_margin", "PrecomputeJob"))


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


# How a precompute names an index field a rerun would record otherwise (``done_identities``' ``worded``): under the
# ``lowdim`` command by the flag that sets it, where that is not the field's name with dashes; from Python by the
# field of PrecomputeJob (``JOB_FIELDS``) or TrainConfig (the seed and the rest of ``config``) that sets it.
FLAGS = {"layer_set": "--layers", "config.learning_rate": "--lr"}
# Index fields a PrecomputeJob field sets: the field's name.
# The rate: PrecomputeJob's own field, which --lr sets (TrainConfig's is refused when it says otherwise).
JOB_FIELDS = {"model": "model", "space": "space", "space_config": "space_options", "layer_set": "layers",
              "config.learning_rate": "learning_rate",
              "resolution": "resolution", "config.crop": "crop", "config.crop_margin": "crop_margin",
              "config.face_index": "face_index", "config.shared_noise": "shared_noise"}
TRAIN_FIELDS = frozenset(setting.name for setting in fields(TrainConfig))
# On/off settings as the command line says each side: (on, off).
SWITCHES = {"config.augment": ("--augment", "--no-augment"), "config.crop": ("--crop", "--no-crop"),
            "config.shared_noise": ("--shared-noise", "no --shared-noise")}
# TrainConfig fields precompute has no flag for (a run from Python set them): named by the field.
NO_FLAG = ("config.grad_accum", "config.max_grad_norm", "config.weight_decay")
# What a side that left a setting out had (the index records these only when not at their default).
LEFT_OUT = {"config.optimizer": "adamw", "config.face_index": "the largest face"}
# Fields that follow from another: when that one differs, its own line says it (another --space's whole config,
# another model's layers and resolution, the margin of a crop one side did not make).
FOLLOWS_FROM = {"space_config": ("space",), "layers": ("model", "layer_set"), "resolution": ("model",),
                "config.crop_margin": ("config.crop",), "config.face_index": ("config.crop",)}


class Sides(NamedTuple):
    """How a difference's line names its two sides: a rerun's folder and the rerun itself (``there``, ``now``), or
    two folders (``in w1``, ``in w2``: ``weight_dataset``). Where both sides name one file that held other bytes:
    ``apart`` says which side had another (``there``; ``in w1 than in w2``), ``since`` when it changed."""

    there: str = "there"
    now: str = "now"
    since: str = "since"
    apart: str = "there"


RERUN_SIDES = Sides()  # precompute's own lines: the --out's index there, this run now


def precompute_worded() -> Worded:
    """How a precompute's refusal words what differs, for the reader at hand (``precompute_differences``)."""
    return precompute_differences


def precompute_differences(field: str, index: dict, header: dict, sides: Sides = RERUN_SIDES) -> list[str]:
    """A field of ``index`` that ``header`` (this run's) records otherwise, as its reader set it: as ``lowdim
    precompute`` is typed (``--lr (0.002 there, 0.01 now)``, ``--augment there, --no-augment now``, ``--set rank (1
    there, 2 now)``), or from Python by the field (``PrecomputeJob(learning_rate=...) (0.002 there, 0.01 now)``,
    ``PrecomputeJob(space_options=...) rank (1 there, 2 now)``). ``sides`` names the two sides (two folders compared:
    ``--lr (0.002 in w1, 0.01 in w2)``)."""
    if any(recorded(index, cause) != recorded(header, cause) for cause in FOLLOWS_FROM.get(field, ())):
        return []
    # --lr left out: the rate is the --space's default, and going back to the space there gives its rate again
    if field == "config.learning_rate" and rate_followed(recorded(index, field), recorded(index, "space")):
        return []
    there, now = recorded(index, field), recorded(header, field)
    if field == "space_config":
        named = either("--set ", f"{option('space_options', 'PrecomputeJob')} ")
        return [_changed(named + ".".join(map(str, path)), field, (old, index), (new, header), sides)
                for path, old, new in leaves((), there, now)]
    if field == "layers":
        old, new = (len(side) if isinstance(side, list) else 0 for side in (there, now))
        counts = f"{old} {sides.there}, {new} {sides.now}" if old != new else "as many, of other shapes"
        return [f"the layers of the {either('--model', 'model')} ({counts}; the model changed {sides.since})"]
    if field == "config.init":
        return [_init_line(there, now, index, header, sides)]
    if field in SWITCHES and on_the_command_line():
        return [switched(SWITCHES[field], there, now, (sides.there, sides.now))]
    return [_changed(_named(field), field, (there, index), (now, header), sides)]


def _named(field: str) -> str:
    """The option that sets ``field``: its flag under the ``lowdim`` command, its PrecomputeJob or TrainConfig field
    from Python (a setting this lowdim has no field for, by its name in the index)."""
    name = field.removeprefix("config.")
    flag = name if field in NO_FLAG else FLAGS.get(field, "--" + name.replace("_", "-"))
    if field in JOB_FIELDS:
        return option(JOB_FIELDS[field], "PrecomputeJob", flag)
    if name in TRAIN_FIELDS:
        return option(name, "TrainConfig", flag)
    return either(flag, f"the training setting {name!r}")


def _changed(named: str, field: str, there: tuple[object, dict], now: tuple[object, dict], sides: Sides) -> str:
    """``named (THERE there, NOW now)``, each (value, its index) as its reader writes it: on the command line, a
    default the index left out by what it is (``resume_words.changed``); from Python, as
    ``shown_setting`` shows it (a repr, or on/off)."""
    if on_the_command_line():
        old, new = (LEFT_OUT.get(field) if value is None else value for value, _ in (there, now))
        return changed(named, old, new, (sides.there, sides.now))
    return f"{named} ({shown_setting(field, *there)} {sides.there}, {shown_setting(field, *now)} {sides.now})"


def _init_line(there: object, now: object, index: dict, header: dict, sides: Sides) -> str:
    old, new = shown_init(there, index), shown_init(now, header)
    if old == new:  # one path, other bytes: the file was written anew since
        return f"{new} (another initial adapter {sides.apart}: the file changed {sides.since})"
    return f"{old} {sides.there}, {new} {sides.now}"
