"""Whether a checkpoint belongs to the run that would resume it: its recorded settings and inputs compared
with the run's, each difference one line of the refusal (``lowdim_sd.checkpoints.restore``, ``check_resume``).

The inputs a run records for that (``inputs_digest``): each subject's reference pixels and noise seed, and a
fingerprint of the base model's weights; the settings are the run's options (``lowdim_sd.train.run_settings``), the
trained state's signature among them (``TRAINABLE``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import Tensor

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.injection.state_guard import base_model_only
from lowdim.option_words import either
from lowdim_sd.resume_words import listed
from lowdim_sd.train_job_words import job_option

if TYPE_CHECKING:
    from pathlib import Path

    from lowdim_sd.loading import SDModel
    from lowdim_sd.train import Subject

Worded = Callable[[str, dict, dict], list[str]]
TRAINABLE = "trainable"  # the SD engine's settings: the trained state's signature (``Trainable.signature``)


def check_settings(folder: Path, stored: dict, current: dict, worded: Worded | None = None) -> None:
    """Refuse a checkpoint in ``folder`` whose ``stored`` settings differ from the ``current`` run's, naming each
    difference (``differences_between``)."""
    different = differences_between(stored, current, worded)
    if not different:
        return
    way_on = either("resume with the same options, or choose another --out",
                    "resume with the same settings, or choose another out")
    raise LowdimError(f"{folder}: checkpoint of a run with other settings: {listed(different)}; {way_on}")


def differences_between(stored: dict, current: dict, worded: Worded | None = None) -> list[str]:
    """What ``restore`` refuses a checkpoint's ``stored`` settings for, one line each; none: it resumes."""
    worded = worded or _differences
    current = json_text.loads(json.dumps(current))  # as stored: tuples become lists
    if not stored or not current or stored == current:
        return []  # checkpoints from before settings were recorded resume as they always did
    different = [line for key in sorted(set(stored) | set(current))
                 if key not in (TRAINABLE, "inputs", *NO_LONGER_COMPARED) and stored.get(key) != current.get(key)
                 and (key in stored or key not in RECORDED_SINCE) for line in worded(key, stored, current)]
    # The signature is worded whole: one of its keys tells what another's difference means (another space,
    # another config), or that it is another kind of run altogether.
    if (stored.get(TRAINABLE) or {}) != (current.get(TRAINABLE) or {}):
        different += worded(TRAINABLE, stored, current)
    merged_alike = _merged_part(stored.get(TRAINABLE)) == _merged_part(current.get(TRAINABLE))
    different += input_differences(stored.get("inputs"), current.get("inputs") or {}, merged_alike)
    if stored.get("seed") == current.get("seed"):  # else the seed's own line says why every subject's differs
        different += _seed_differences(stored.get("inputs"), current.get("inputs") or {})
    return list(dict.fromkeys(different))  # the seed is the run's and its adapter's: said once


# Settings a checkpoint leaves out at their default (so that checkpoints made before they existed resume): a side
# without one had the default, which is what the message says, not "None".
LEFT_OUT_AT_DEFAULT = {"dropout": 0.0, "optimizer": "adamw", "processes": 1}  # processes: train-hypernet's


# Settings older checkpoints recorded that a resume may now change, as they change no result (``train.RESUMABLE``):
# never compared, so those checkpoints resume with them changed as newer ones do.
NO_LONGER_COMPARED = ("gradient_checkpointing",)


# Settings a checkpoint records since a later version: one made before says nothing of them, so they are compared
# only where it did (it resumes as it always did, checked on what it recorded).
RECORDED_SINCE = ("weight_folders", "extra_images")


def _differences(key: str, stored: dict, current: dict) -> list[str]:
    """One line per differing option: a nested one is named by its path (``hyper.width (64 there, 32 now)``), not
    shown as two whole dicts to compare by eye."""
    there, now = stored.get(key), current.get(key)
    if key == TRAINABLE:  # each of the signature's keys by its own name (``space_config (...)``)
        old, new = there or {}, now or {}
        return [_difference(name, old, new) for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
    if isinstance(there, dict) and isinstance(now, dict):
        return _nested_differences(key, there, now)
    return [_difference(key, stored, current)]


_UNSET = "not set"  # a nested option one side left out (at its default)


def _nested_differences(path: str, there: dict, now: dict) -> list[str]:
    lines = []
    for key in sorted(set(there) | set(now)):
        old, new = there.get(key, _UNSET), now.get(key, _UNSET)
        if old == new:
            continue
        name = f"{path}.{key}"
        both = isinstance(old, dict) and isinstance(new, dict)
        lines += _nested_differences(name, old, new) if both else [f"{name} ({old} there, {new} now)"]
    return lines


def _difference(key: str, stored: dict, current: dict) -> str:
    default = LEFT_OUT_AT_DEFAULT.get(key)
    return f"{key} ({stored.get(key, default)} there, {current.get(key, default)} now)"


def inputs_digest(model: SDModel, subjects: list[Subject], names: list[str]) -> dict:
    """What a run trains on, for ``restore`` to compare: each subject's reference pixels (as loaded, so
    cropping and resizing count) and a fingerprint of the base model's weights."""
    images = {name: _digest([subject.images]) for name, subject in zip(names, subjects, strict=True)}
    seeds = {name: subject.seed for name, subject in zip(names, subjects, strict=True)}  # each one's draws
    side = _picture_size(subjects[0].images) if subjects else None  # --resolution, or the model's own
    return {"images": images, "seeds": seeds, "model": weights_fingerprint(model),
            **({"resolution": side} if side else {})}


def _picture_size(images: Tensor) -> int | str:
    """The side of square pictures, as checkpoints always recorded it (they keep resuming); "HxW" (height x
    width) for others, whose width alone would name two other sizes alike."""
    height, width = (int(side) for side in images.shape[-2:])
    return width if height == width else f"{height}x{width}"


def _other_size(there: object, now: object) -> bool:
    """Whether two recorded picture sizes differ. A checkpoint from before non-square ones were recorded whole says
    their width alone: one that width may be is no difference (their pixels' digest still tells)."""
    if not there or not now or there == now:
        return False
    widths = [str(size).rpartition("x")[2] for size in (there, now)]
    return not (isinstance(there, int) != isinstance(now, int) and widths[0] == widths[1])


def weights_fingerprint(model: SDModel) -> str:
    """sha256 over every UNet, text encoder and VAE tensor's name, shape, dtype and up to 4096 evenly spaced
    values: another model (or another --dtype) differs, at a cost of milliseconds even for SD1.5 (hashing
    all 1.1 B weights would take seconds on every run)."""
    digest = hashlib.sha256()
    pipe = model.pipe
    for part in ("unet", "text_encoder", "vae"):
        with base_model_only():  # the slots' entries are skipped below: no need to hash their bases first
            state = getattr(pipe, part).state_dict()
        for name, tensor in state.items():
            if ".slots." in name:  # lowdim's own adapters are the run's trainable state, not the base model
                continue
            name = name.replace(".base_layer.", ".")  # the wrapped layer's weights, under their own name
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 4096)][:4096]
            digest.update(f"{part}.{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(sample.cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def _digest(tensors: list[Tensor]) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _merged_part(signature: dict | None) -> list | None:
    """What of the trained state a run folded into the base weights before their digest was taken (``--init``'s
    frozen initial adapter, merged by ``relax_rank``): the signature's frozen part, its components and its layers;
    None when nothing was merged."""
    signature = signature or {}
    config = signature.get("space_config") or {}
    if signature.get("space") != "stack" or not config.get("merge_frozen"):
        return None
    return [signature.get("frozen_part"), (config.get("components") or [])[:-1], signature.get("layer_set"),
            signature.get("layers")]


def input_differences(stored: dict | None, current: dict, merged_alike: bool = True) -> list[str]:
    """The reference images and base model that differ. ``merged_alike``: both runs folded the same into the
    weights; else the weights digest differs by what was merged, which the signature's line names (another
    --init, --no-merge-frozen): it says nothing then of the model the user gave."""
    if not stored:  # checkpoints from before inputs were recorded
        return []
    found = []
    there, now = stored.get("resolution"), current.get("resolution")
    if _other_size(there, now):  # every picture differs then: the option is what to name
        found.append(f"{job_option('resolution')} ({there} there, {now} now)")
    else:
        found += _image_differences(stored.get("images") or {}, current.get("images") or {})
    if merged_alike and stored.get("model") != current.get("model"):
        found.append(f"the base model differs (weights digest {stored.get('model')} there, {current.get('model')} "
                     f"now: another model, or another {job_option('dtype')})")
    return found


def _seed_differences(stored: dict | None, current: dict) -> list[str]:
    """The subjects whose noise seed (their draws) differs, where both sides recorded them (older ones did not)."""
    old, new = (stored or {}).get("seeds"), current.get("seeds")
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    if len(old) == len(new) == 1:
        old, new = {"": next(iter(old.values()))}, {"": next(iter(new.values()))}
    whose = {name: f" of subject '{name}'" if name else "" for name in old}
    return [f"the noise seed{whose[name]} ({old[name]} there, {new[name]} now)" for name in sorted(set(old) & set(new))
            if old[name] != new[name]]


def _image_differences(old: dict, new: dict) -> list[str]:
    if len(old) == len(new) == 1:
        # One subject each side is the same subject whatever its name: a --full run names it '0', an adapter run
        # by its file ('adapter') or its --subjects folder; another mode or folder is the signature's to name.
        old, new = {"": next(iter(old.values()))}, {"": next(iter(new.values()))}
    # A subject on one side only (a folder renamed, added or removed) has no pictures to compare with: the subjects
    # line names it, and its pictures are not said to differ from none.
    names = sorted(set(old) & set(new))
    several = len(set(old) | set(new)) > 1  # one subject has no name to give
    whose = {name: f" of subject '{name}'" if several else "" for name in names}
    return [f"the reference images{whose[name]} differ (pixels, crop or size; digest {old[name]} there, "
            f"{new[name]} now)" for name in names if old[name] != new[name]]
