"""What a resumed ``lowdim train-hypernet`` must repeat: its options, and which weight folders and extra images
it reads (compared by ``lowdim_sd.checkpoints.check_resume``; the extra images' pictures here, by their bytes), and
which checkpoint it continues from."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.option_words import Wording, counted, either
from lowdim_sd import checkpoints
from lowdim_sd import hypertrain_words as words
from lowdim_sd.checked_pictures import CheckedPictures
from lowdim_sd.checkpoint_reading import read_state, step_folders
from lowdim_sd.hypernet_folders import is_weight_folder  # by its index's format
from lowdim_sd.resume_words import changed, worded_change, worded_switch
from lowdim_sd.runs import holds_the_shared_out
from lowdim_sd.weight_dataset import WeightDataset

if TYPE_CHECKING:
    from lowdim_sd.hypertrain import HyperTrainJob


RESUMED_AS_THEY_WERE = ("model", "hyper", "batch_size", "learning_rate", "weight_decay", "alpha", "beta",
                        "diffusion_iterates", "diffusion_target", "extra_batch_size", "key_steps", "key_renders",
                        "val_fraction", "val_identities", "seed", "augment", "all_images", "prompt", "token",
                        "max_grad_norm", "mixed_precision")


def resume_settings(job: HyperTrainJob, full: WeightDataset, processes: int = 1) -> dict:
    """What ``checkpoints.check_resume`` compares: the options in RESUMED_AS_THEY_WERE, the identity count, which
    weight folders and --extra-images the run reads and, past one, the number of processes (each draws
    --batch-size pairs a step: another count, another run)."""
    settings = {name: getattr(job, name) for name in RESUMED_AS_THEY_WERE}
    settings["identities"] = len(full.names)  # more weights since (precompute went on): another training set
    # Other people under the same names (another folder, re-precomputed) fit split.json and the count alike.
    settings["weight_folders"] = weight_folders_identity(full)
    settings["extra_images"] = extra_images_setting(job, full)
    if processes > 1:  # left out at one, so single-process checkpoints made before it was recorded still resume
        settings["processes"] = processes
    return json_text.loads(json.dumps(settings, default=str))


# What the run reads rather than an option it was given: named by the option that chose it; their values describe
# what was read (``w: 4 identities, pictures ...``), written as they are for either reader.
INPUTS = ("identities", "weight_folders", "extra_images", "processes")


def _input_named(key: str) -> str:
    """An input by its flag (``-w``, ``--extra-images``) or HyperTrainJob field (``HyperTrainJob(weights=...)``);
    the process count, which the launcher sets, by its name."""
    weights = words.name("weights", "-w")
    return {"identities": f"the identities in {weights}", "weight_folders": weights,
            "extra_images": words.name("extra_images"),
            "processes": either("processes", "the training setting 'processes'")}[key]


def worded_differences(key: str, stored: dict, current: dict) -> list[str]:
    """A differing setting as its reader set it: by the flag under the ``lowdim`` command (``--lr (0.0001 there,
    0.001 now)``, ``--augment there, --no-augment now``), from Python by its HyperTrainJob field
    (``HyperTrainJob(learning_rate=...) (0.0001 there, 0.001 now)``, ``HyperTrainJob(augment=...) (on there, off
    now)``): ``checkpoints.check_resume``'s ``worded``."""
    default = checkpoints.LEFT_OUT_AT_DEFAULT.get(key)
    there, now = stored.get(key, default), current.get(key, default)
    if key == "hyper" and isinstance(there, dict) and isinstance(now, dict):
        return _hyper_differences([], there, now)
    if key in words.SWITCHES:
        return [worded_switch(words.name(key), words.SWITCHES[key], there, now)]
    if key in INPUTS:
        return [changed(_input_named(key), there, now)]
    return [worded_change(words.name(key), there, now)]


def _hyper_differences(path: list[str], there: dict, now: dict) -> list[str]:
    """A network option by its flag (``--width``), a nested one by the flag and its path within
    (``--encoder-config hidden_size``); from Python by its path in the hyper field (``HyperTrainJob(hyper=...)
    width``): one line each, not two whole dicts to compare by eye."""
    lines = []
    for key in sorted(set(there) | set(now)):
        old, new = there.get(key), now.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            lines += _hyper_differences([*path, key], old, new)
        elif not path and key in words.HYPER_SWITCHES:
            lines.append(worded_switch(words.hyper_option([key]), words.HYPER_SWITCHES[key], old, new))
        else:
            lines.append(worded_change(words.hyper_option([*path, key]), old, new))
    return lines


def weight_folders_identity(full: WeightDataset) -> str:
    """Each weight folder by name, identity count and a digest of its identities' names and pictures (the
    digests precompute recorded; the image paths in folders made before it recorded them)."""
    described = []
    for position, folder in enumerate(full.folders):
        entries = sorted(([entry["name"], entry.get("digests") or entry.get("digest") or entry["images"]]
                          for entry in full.entries if entry["folder"] == position), key=lambda pair: pair[0])
        described.append(f"{folder.resolve().name}: {len(entries)} identities, pictures {_digest(entries)}")
    return " + ".join(described)


def extra_images_setting(job: HyperTrainJob, full: WeightDataset) -> str | list[dict]:
    """The --extra-images as a checkpoint records them: each folder by name with each picture's digest (of its
    bytes, as a weight folder's pictures are compared), or "none". A resume is compared here, picture by picture,
    so that its refusal names the picture. The digests are those ``full.checked`` holds the pictures to while
    training (a picture is read once at the start, however many readers check it)."""
    checkpoint, stored = _resumed(job)
    recorded = stored.get("extra_images")
    recorded = [] if recorded == "none" else recorded  # no pictures, whichever lowdim recorded it
    if recorded is not None and not _is_record_of_pictures(recorded):
        # Checkpoints from before the pictures' bytes were recorded hold their names and sizes: compared on what they
        # recorded, as they always were, so they still resume (a same-size replacement passes their check).
        return extra_images_identity(job.extra_images)
    pictures = extra_pictures(job.extra_images, full.checked)
    if checkpoint is not None and recorded is not None:
        refuse_other_pictures(checkpoint, recorded, pictures, job.extra_images)
    return pictures or "none"


def _resumed(job: HyperTrainJob) -> tuple[Path | None, dict]:
    """The checkpoint a resume continues (as ``checkpoint_to_resume`` finds it) and the settings it recorded."""
    folder = checkpoints.latest(job.out) if job.resume and not job.overwrite else None
    return (folder, read_state(folder).get("settings") or {}) if folder is not None else (None, {})


def extra_pictures(folders: list[Path], checked: CheckedPictures) -> list[dict]:
    """Each --extra-images folder by name, with the digest of each picture training reads (each identity's first),
    by its path within the folder."""
    from lowdim_sd.precompute import discover_identities

    return [{"folder": Path(folder).resolve().name,
             "pictures": {os.path.relpath(path, folder): checked.hold(path)
                          for path in (identity.images[0] for identity in discover_identities(folder))}}
            for folder in folders]


def _is_record_of_pictures(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(folder, dict) and isinstance(folder.get("folder"), str) and isinstance(folder.get("pictures"), dict)
        for folder in value)


# As check_resume names a setting: its flag under the command, its field from Python.
EXTRA_IMAGES = Wording("--extra-images", "extra_images")


def refuse_other_pictures(checkpoint: Path, recorded: list[dict], current: list[dict], folders: list[Path]) -> None:
    """One line, if the --extra-images differ from those ``checkpoint``'s run trained on: another folder, or another
    count of identities in one, by folder; else the first picture whose bytes (or name) differ, by its path."""
    there, now = _counted(recorded), _counted(current)
    if there != now:
        raise LowdimError(f"{checkpoint}: checkpoint of a run with other settings: "
                          f"{changed(_input_named('extra_images'), there, now)}; "
                          f"{either('resume with the same options', 'resume with the same settings')}, or "
                          f"{either('choose another --out', 'choose another out')}")
    differing = [(Path(folder) / name, name in old["pictures"])
                 for folder, old, new in zip(folders, recorded, current, strict=True)
                 for name, digest in new["pictures"].items() if old["pictures"].get(name) != digest]
    if not differing:
        return
    (path, same_name), more = differing[0], len(differing) - 1
    what = ("is not the picture it trained on under that name (other bytes)" if same_name else
            "is not among the pictures it trained on")
    others = f"; {counted(more, 'more picture')} differ{'s' if more == 1 else ''}" if more else ""
    raise LowdimError(f"{checkpoint}: checkpoint of a run that trained on other {EXTRA_IMAGES}: {path} "
                      f"{what}{others}; put back the pictures it trained on, or "
                      f"{either('choose another --out', 'choose another out')} to train on these")


def _counted(record: list[dict]) -> list[str]:
    return [f"{folder['folder']}: {len(folder['pictures'])} identities" for folder in record]


def extra_images_identity(folders: list[Path]) -> str:
    """Each --extra-images folder by name, identity count and a digest of the names and sizes of the images training
    reads (each identity's first): what checkpoints recorded before they recorded each picture's digest, and still
    compared for those (``extra_images_setting``)."""
    from lowdim_sd.precompute import discover_identities

    described = []
    for folder in folders:
        paths = [identity.images[0] for identity in discover_identities(folder)]
        files = [[os.path.relpath(path, folder), path.stat().st_size] for path in paths]
        described.append(f"{folder.resolve().name}: {len(paths)} identities, files {_digest(files)}")
    return " + ".join(described) or "none"


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:12]


def checkpoint_to_resume(out: Path, resume: bool, retrieval: bool = False, overwrite: bool = False) -> Path | None:
    """The newest checkpoint in ``out`` when resuming; refuses to start over on an earlier run's files unless
    ``overwrite`` (which ``clear_earlier_run`` honours once the run is past its checks). A weight folder (a -w
    given again as -o, the usual slip) is refused even so: its network and checkpoints would sit among the shards,
    and ``lowdim show`` would tell the folder as one or the other."""
    if is_weight_folder(out):
        raise LowdimError(f"{out}: is a precomputed weight folder (lowdim precompute); train-hypernet writes its "
                          f"network and checkpoints elsewhere: {either('pass another -o', 'pass another out')}")
    if overwrite:
        return None
    folder = checkpoints.latest(out)
    if folder is not None and not resume:
        remedy = either("pass --resume to continue it, --overwrite to start over, or choose another --out",
                        "pass resume=True to continue it, overwrite=True to start over, or choose another out")
        raise LowdimError(f"{out} holds checkpoints of an earlier run (latest {folder.name}); {remedy}")
    if folder is None and (out / "hypernet.safetensors").is_file():
        # A finished run without periodic checkpoints: starting over would overwrite it, resuming would too.
        every = either("--checkpoint-every", "checkpoint_every")
        later = ("; a retrieval head is made whole in one go, so there is nothing to continue" if retrieval else
                 f" (or save checkpoints with {every} to continue runs later)")
        remedy = either("pass --overwrite to start over, or choose another --out",
                        "pass overwrite=True to start over, or choose another out")
        raise LowdimError(f"{out} holds a finished hypernetwork and no checkpoint to resume from; {remedy}{later}")
    if folder is None and resume:  # a mistyped --out would otherwise start over without a word, as train warns
        warnings.warn(f"{either('--resume', 'resume=True')}: {out} holds no checkpoint, so the run starts from "
                      f"step 0", stacklevel=3)
    return folder


EARLIER_RUN_FILES = ("hypernet.safetensors", "split.json", "metrics.jsonl")


def clear_earlier_run(out: Path) -> None:
    """What an earlier run left in ``out``: its checkpoints would pass for this run's at a later --resume, its
    split would be read back, its log appended to, and its hypernetwork would stand if this run were stopped."""
    shutil.rmtree(out / checkpoints.FOLDER, ignore_errors=True)
    for name in EARLIER_RUN_FILES:
        (out / name).unlink(missing_ok=True)


SET_ASIDE_PREFIX = ".earlier-run-"


def put_back_set_aside(out: Path) -> None:
    """An earlier run that a killed ``--overwrite`` of a retrieval head left set aside (``earlier_run_set_aside``'s
    folder, which only a kill leaves: a refusal or a stop puts it back) goes back in place of what the killed run
    wrote, with a warning: a run holds ``out``'s lock here, so that run is gone. Rank 0 only, under a launcher."""
    if not holds_the_shared_out() or not out.is_dir():
        return
    for aside in sorted(out.glob(SET_ASIDE_PREFIX + "*")):
        if not aside.is_dir() or aside.is_symlink():
            continue
        clear_earlier_run(out)  # the killed run's split, log or checkpoints: none of it is a result
        for kept in aside.iterdir():
            os.replace(kept, out / kept.name)
        shutil.rmtree(aside, ignore_errors=True)
        warnings.warn(f"{out}: put back the earlier run that a killed --overwrite had set aside in {aside.name} "
                      f"(the killed run's files went)", stacklevel=2)


@contextmanager
def earlier_run_set_aside(out: Path, overwrite: bool) -> Iterator[None]:
    """For a run whose checks run while it writes (the retrieval head's fill): the earlier run's files wait in a
    hidden folder in ``out``, put back if the run is refused or stopped (what it wrote goes), removed once it is
    done. Without ``overwrite``, nothing is moved."""
    earlier = [name for name in (checkpoints.FOLDER, *EARLIER_RUN_FILES) if (out / name).exists()] if overwrite else []
    if not earlier:
        yield
        return
    aside = out / f"{SET_ASIDE_PREFIX}{os.getpid()}"
    aside.mkdir(exist_ok=True)
    for name in earlier:
        os.replace(out / name, aside / name)
    try:
        yield
    except BaseException:
        clear_earlier_run(out)  # this run's files: none of it is the result
        for name in earlier:
            os.replace(aside / name, out / name)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def drop_unfinished_checkpoints(out: Path) -> None:
    """Step folders without their ``state.json``: a save a stop cut short and could not redo (a second Ctrl-C, a
    full disk). No checkpoint, and no resume reads one; removed so none is left behind to look like one."""
    for folder in step_folders(out / checkpoints.FOLDER):
        if not folder.is_symlink() and not (folder / "state.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
