"""``lowdim personalize``'s settings checked before anything loads (one line naming the first bad one), and
those it takes from the hypernetwork file."""

from __future__ import annotations

import numbers
import os
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lowdim.errors import LowdimError
from lowdim.files import DTYPES
from lowdim.option_words import either, option
from lowdim_sd.draw_parts import parse_draw
from lowdim_sd.faces import FoundFaces, check_crop_margin
from lowdim_sd.generate import check_resolution
from lowdim_sd.images import open_rgb
from lowdim_sd.model_tree import refuse_out_in_model
from lowdim_sd.train import TrainConfig
from lowdim_sd.train_settings import DEFAULT_TOKEN, refuse_inference_mode
from lowdim_sd.train_settings import check_types as check_field_types

if TYPE_CHECKING:
    from PIL import Image

    from lowdim.hyper.storage import HypernetFile
    from lowdim_sd.personalize import PersonalizeJob
    from lowdim_sd.precompute import PrecomputeJob


def check_job(job: PersonalizeJob) -> None:
    """Every setting that can be checked without the model or any file, before anything loads."""
    from lowdim_sd.export import FORMATS

    refuse_inference_mode()  # the finetune needs autograd, and even --only-hyper's file is written by train()
    check_types(job)
    if not isinstance(job.export, (list, tuple)) or not all(isinstance(fmt, str) for fmt in job.export):
        raise LowdimError(f"{named('export')} takes a list of formats ({', '.join(FORMATS)}), got {job.export!r:.40}")
    unknown = [fmt for fmt in job.export if fmt not in FORMATS]
    if unknown:
        raise LowdimError(f"unknown {named('export')} format '{unknown[0]}'; choose from {', '.join(FORMATS)}")
    if job.rank < 1:
        raise LowdimError(f"{named('rank')} must be >= 1, got {job.rank}")
    if job.only_hyper and job.no_hyper:
        raise LowdimError(f"{switch('only_hyper')} keeps the prediction and {switch('no_hyper')} drops it: choose one")
    check_only_hyper(job)
    if job.save_dtype not in DTYPES:
        from lowdim_sd.devices import DTYPE_MEANT, did_you_mean

        raise LowdimError(f"{named('save_dtype')} must be one of {', '.join(DTYPES)}, got '{job.save_dtype}'"
                          + did_you_mean(str(job.save_dtype), DTYPE_MEANT, list(DTYPES)))
    if job.preview and job.preview_steps < 1:
        raise LowdimError(f"{named('preview_steps')} must be >= 1, got {job.preview_steps}")
    check_preview_flags(job)
    if job.token is not None:
        check_token(job.token, "the hypernetwork's own word, else sks", "PersonalizeJob")
    if job.iterations is not None and job.iterations < 1:
        raise LowdimError(f"{named('iterations')} must be >= 1 (the hypernetwork's refinement passes), got "
                          f"{job.iterations}")
    check_crop_margin(job.crop_margin, named("crop_margin"))
    if job.face_index is not None and job.face_index < 0:
        raise LowdimError(f"{named('face_index')} must be 0 or more (0 is the largest face), got {job.face_index}")
    check_crop_flags(job)
    for text in job.preview_draws or ():
        parse_draw(text)
    check_resolution(job.resolution)
    check_finetune_settings(job)


def check_finetune_settings(job: PersonalizeJob) -> None:
    """The finetune's values the job sets itself, its device and dtype: refused before an earlier run's folder is
    (one fix, not two reruns); the defaults they leave to the model are checked once it is known."""
    from lowdim_sd.devices import check_training_dtype, resolve_device
    from lowdim_sd.step_graphs import check_graphs

    settings = (("learning_rate", job.learning_rate), ("batch_size", job.batch_size), ("steps", job.steps))
    given: dict[str, Any] = {name: value for name, value in settings if value is not None}
    TrainConfig(**given, keep_styles=job.keep_styles).validate("PersonalizeJob")
    check_training_dtype(job.device, job.dtype)
    if job.cuda_graphs:
        check_graphs(resolve_device(job.device), "no", job.gradient_checkpointing)


# The job's numbers and switches, checked by type before the range checks compare them; the optional ones take
# None too (the run's or the backend's default). The CLI's parsing already gives these types.
JOB_TYPES = {"steps": numbers.Integral, "rank": numbers.Integral, "learning_rate": numbers.Real,
             "batch_size": numbers.Integral, "keep_styles": numbers.Real, "describe": bool,
             "seed": numbers.Integral, "bases_seed": numbers.Integral, "preview": bool,
             "preview_steps": numbers.Integral, "resolution": numbers.Integral, "no_hyper": bool,
             "only_hyper": bool, "iterations": numbers.Integral, "crop": bool, "crop_margin": numbers.Real,
             "face_index": numbers.Integral, "overwrite": bool, "gradient_checkpointing": bool, "cuda_graphs": bool}
OPTIONAL = ("steps", "learning_rate", "batch_size", "describe", "bases_seed", "resolution", "iterations", "crop",
            "face_index")


def check_types(job: PersonalizeJob) -> None:
    """A setting of the wrong type from Python is one line naming it (``crop="no"``, which is truthy and would
    crop; ``crop_margin="0.6"``), as ``TrainConfig``'s are, not a TypeError or a message about another thing."""
    check_field_types(job, JOB_TYPES, "PersonalizeJob", optional=OPTIONAL, flags=FINETUNE_FLAGS)


def named(field: str) -> str:
    """A PersonalizeJob field as its reader typed it: ``--preview-steps``, or ``PersonalizeJob(preview_steps=...)``."""
    return option(field, "PersonalizeJob", FINETUNE_FLAGS.get(field))


def switch(field: str, value: bool = True, owner: str = "PersonalizeJob") -> str:
    """A switch as its reader set it: ``--only-hyper``/``--no-preview``, or ``PersonalizeJob(only_hyper=True)``."""
    flag = "--" + ("" if value else "no-") + field.replace("_", "-")
    return either(flag, f"{owner}({field}={value})")


def check_token(token: str, default: str, owner: str = "TrainConfig") -> None:
    """--token is one word: an empty one trains on "a  face" and leaves [V] to mean 'sks' in every prompt, and one
    with spaces would be two words that the prompts must repeat exactly. ``default``: what leaving it out gives;
    ``owner``: the class whose ``token`` a Python caller set."""
    name = option("token", owner)
    if not isinstance(token, str):  # from Python: else an AttributeError from .strip() below
        raise LowdimError(f"{name} must be one word (a str) or None, got {token!r:.40}")
    if not token.strip():
        raise LowdimError(f"{name} is empty: give one word, the rare word that [V] stands for, or "
                          f"{either('leave --token out', f'leave {owner}.token unset')} (then {default})")
    # isprintable: an escape or NUL is no space yet no letter of a word; it would reach the run's lines and files
    if token != token.strip() or len(token.split()) != 1 or not token.isprintable():
        shown = f"{token[:60]!r}" + (f" (cut: {len(token)} characters)" if len(token) > 60 else "")
        raise LowdimError(f"{name} must be one word of printable letters, the rare word that [V] stands for, with "
                          f"no spaces; got {shown}")


# The job's fields that only the fast finetune reads, as the CLI names them; the first given is named.
FINETUNE_FLAGS = {"keep_styles": "--keep-styles", "steps": "--steps", "rank": "--rank", "learning_rate": "--lr",
                  "batch_size": "--batch-size", "gradient_checkpointing": "--gradient-checkpointing",
                  "cuda_graphs": "--cuda-graphs"}


def check_preview_flags(job: PersonalizeJob) -> None:
    """--preview-steps and --preview-draw shape the preview: with --no-preview they would be silently dropped."""
    steps_given = job.preview_steps != fields_default(job, "preview_steps")
    given = [name for name, is_given in ((named("preview_steps"), steps_given),
                                         (option("preview_draws", "PersonalizeJob", "--preview-draw"),
                                          bool(job.preview_draws))) if is_given]
    if not job.preview and given:
        raise preview_conflict(given[0])


def preview_conflict(flag: str) -> LowdimError:
    """``flag``: the setting as its reader typed it (the CLI passes its flag)."""
    off = switch("preview", False)
    return LowdimError(f"{flag} shapes the preview, which {off} skips; leave it out, or drop {off}")


def check_only_hyper(job: PersonalizeJob) -> None:
    """--only-hyper skips the fast finetune, and so does --steps 0, so a finetune setting given with either would be
    silently dropped (and recorded for a LoRA never trained). Given means off the job's default; 0 steps says no
    finetune too, and is how the bench's only-hyper rows ask for it. (The CLI also refuses a flag typed at its
    default, --rank 4.)"""
    if not job.only_hyper and job.steps != 0:
        return
    default = {field.name: field.default for field in fields(job)}
    for name in FINETUNE_FLAGS:
        if getattr(job, name) != default[name] and not (name == "steps" and job.steps == 0):
            raise only_hyper_conflict(named(name), job.only_hyper)


def only_hyper_conflict(flag: str, only_hyper: bool = True) -> LowdimError:
    """``flag``: the setting as its reader typed it (the CLI passes its flag); ``only_hyper``: what skips the
    finetune, --only-hyper, or else --steps 0."""
    if only_hyper:
        only = switch("only_hyper")
        return LowdimError(f"{flag} shapes the fast finetune, which {only} skips; leave it out, or drop {only}")
    steps = named("steps")
    return LowdimError(f"{flag} shapes the fast finetune, which {steps} 0 skips; leave it out, or give {steps} 1 or "
                       f"more")


# The crop's own settings: (field, what it does), for the lines that refuse them where nothing is cropped.
CROP_FLAGS = (("face_index", "picks the face to crop"), ("crop_margin", "sets the room around the cropped face"))


def check_crop_flags(job: PersonalizeJob | PrecomputeJob) -> None:
    """--face-index and --crop-margin shape the crop: without the crop they would be silently ignored. Checked
    before resolve_crop, whose warning that the run goes on uncropped would precede this error."""
    from lowdim_sd import face_inputs
    from lowdim_sd.faces import INSTALL_HINT

    given = {"face_index": job.face_index is not None,
             "crop_margin": job.crop_margin != fields_default(job, "crop_margin")}
    field, does = next(((field, does) for field, does in CROP_FLAGS if given[field]), (None, None))
    if field is None or job.crop is True:  # an explicit --crop without the extra: resolve_crop's error
        return
    owner = type(job).__name__
    flag = option(field, owner)
    if job.crop is False:
        raise LowdimError(f"{flag} {does}, and {switch('crop', False, owner)} turns cropping off; leave one out")
    if not face_inputs.backend_crops(job.model):
        raise LowdimError(f"{flag} {does}, and {job.model} does not crop by default (its pictures are whole faces "
                          f"already); {either(f'leave {flag} out', f'leave {field}= out')}, or add "
                          f"{either('--crop', 'crop=True')} for a photo of several faces")
    if not face_inputs.faces_available():
        raise LowdimError(f"{flag} {does}, and cropping needs face detection, which is not installed; {INSTALL_HINT}")


def fields_default(job: PersonalizeJob | PrecomputeJob, name: str):
    return next(field.default for field in fields(job) if field.name == name)


def check_model_word(model: object) -> None:
    """``-m`` refused in the load's own line (generate's, word for word) before the photo or its faces are looked
    at: a bare word close to a registered name (``tinyfacez``, ``SD15``) or one the hub cache does not hold
    (``nosuchdir``), a pickle, a path that is not there. Else a typo read as a path crops by default, and its user
    hears that their photo has no face. An ``owner/name`` hub id goes on: only a lookup of seconds tells whether it
    is there."""
    from lowdim.paths import expand_user
    from lowdim_sd.loading import name_and_source
    from lowdim_sd.model_errors import refuse_missing_model, refuse_pickled_model
    from lowdim_sd.registered_models import registered_entry

    if isinstance(model, os.PathLike):  # from Python: the load takes a Path too
        model = os.fspath(model)
    if not isinstance(model, str):
        return  # load_sd's one line names what it got
    name_and_source(model)  # a misspelt name, a clashed one, one that is no SD1.x model
    if registered_entry(model) is not None:
        return  # its folder or hub id is the backend's to fetch
    path = expand_user(model)
    refuse_pickled_model(path)  # as load_sd's _read_pipeline says them, in this order
    if not path.exists():
        refuse_missing_model(model, path)
        refuse_an_uncached_bare_word(model)


def refuse_an_uncached_bare_word(model: str) -> None:
    """A bare word (no ``/``) that names no registered model and no path, that the hub cache does not hold, and
    that the hub cannot be asked about (offline), in the load's own line, true here: the load would end there, after
    seconds of imports (and, with the crop on, after a face check that blames the photo). With the hub reachable,
    the load asks it, as generate's does."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    from lowdim.hub import hub_reachable
    from lowdim_sd.loading import hub_id_not_found

    if "/" in model or hub_reachable():
        return
    try:
        cached = try_to_load_from_cache(model, "model_index.json")
    except HFValidationError:  # a name the hub's own rules refuse: the load says the same line for it
        cached = None
    if not isinstance(cached, str):  # None, or the cache's note that the file is known to be missing
        raise hub_id_not_found(model)


def check_inputs(job: PersonalizeJob, model_to_load: bool = True) -> Image.Image:
    """``check_job``, the model's word (``model_to_load``: no model given) and the picture: a missing or broken one
    costs milliseconds here, not a model load first. (The quality bench hands personalize a decoded picture, so the
    file check is the CLI's and UI's alone.) Returns the picture decoded, for the face check and crop to read instead
    of the file again."""
    check_job(job)
    if model_to_load:  # after the settings, as generate orders them; before the photo, which a typo is not about
        check_model_word(job.model)
    refuse_out_in_model(job.out, job.model, "personalize", named("out"), model_tree_outputs(job))
    return open_rgb(job.image)


def check_face_found(job: PersonalizeJob, crop: bool, photo: Image.Image | None = None) -> FoundFaces | None:
    """With the crop on (``crop``: the run's, resolved), a photo without a face, or with fewer than ``job.face_index``
    asks for, is one line before the model loads, not after it (12 s on tinyfaces, minutes for sd15 on a CPU). After
    the settings' checks, which a rerun would meet first otherwise. ``photo``: the file as ``check_inputs`` decoded
    it. Returns the faces found with their picture, which the run's crop reads (None: no crop, or no model to crop
    for): the photo is decoded, and its detection keyed, once."""
    from lowdim.hub import looks_like_path
    from lowdim.paths import expand_user

    if not crop or (looks_like_path(job.model) and not expand_user(job.model).exists()):
        return None  # a model path that is not there: the load's line names it, and says so first
    from lowdim_sd import faces

    name = str(Path(job.image))  # as load_face_image names it
    found = faces.find_faces(open_rgb(job.image) if photo is None else photo, name)
    faces.pick_face(list(found.faces), job.face_index, name, faces.job_hints()["no_face_hint"], found.picture.size)
    return found


def model_tree_outputs(job: PersonalizeJob) -> list[Path]:
    """Every path the run writes into ``job.out``, or may remove there with --overwrite (each export and the preview,
    asked for or not): no model may lie at one of them."""
    from lowdim_sd.checkpoints import FOLDER
    from lowdim_sd.export import FORMATS
    from lowdim_sd.run_outputs import ADAPTER, export_path

    adapter = job.out / ADAPTER
    return [adapter, *(export_path(adapter, fmt) for fmt in FORMATS), job.out / "preview.png", job.out / FOLDER]


def with_training_phrase(job: PersonalizeJob, hypernet: HypernetFile | None) -> tuple[PersonalizeJob, str]:
    """The job with its token resolved, and the finetune prompt: those the hypernetwork's targets were
    trained with, since its prediction makes that phrase mean the face. An explicit other --token is kept,
    with a warning: the prediction then sits under a word the prompts never say."""
    stored = hypernet.metadata if hypernet is not None else {}
    token, prompt = stored.get("token"), stored.get("prompt", TrainConfig.prompt)
    if hypernet is not None and job.token is not None and token is not None and job.token != token:
        given, leave = either(f"--token {job.token!r}", f"PersonalizeJob(token={job.token!r})"), either(
            "leave --token out", "leave PersonalizeJob.token unset")
        warnings.warn(f"{hypernet.path} learned its identities under the token {token!r}; with {given} its "
                      f"prediction answers to another word ({leave} to use {token!r})", stacklevel=3)
    return replace(job, token=job.token or token or DEFAULT_TOKEN), prompt
