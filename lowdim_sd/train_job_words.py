"""How ``lowdim train``'s checks name a ``TrainJob`` setting: by its flag on the command line (``--init``), by its
field from Python (``TrainJob(initial=...)``); the lines that refuse a setting a mode never reads; and what a
refused ``lowdim train --resume`` names by flag (``resume_differences``)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from lowdim.option_words import either, option
from lowdim.scoped import scoped
from lowdim_sd.resume_words import changed, leaves, rate_followed, worded_change, worded_switch

# TrainJob's fields whose CLI flag is not the field's name with dashes.
JOB_FLAGS = {"space_options": "--set", "initial": "--init"}


def job_option(name: str) -> str:
    """A TrainJob field as its reader typed it: ``--init`` on the command line, ``TrainJob(initial=...)`` else; for
    a caller of the low-level ``train()``, who made no TrainJob, what they passed instead (``from_a_job``)."""
    if not _FROM_A_JOB.get():
        return LOW_LEVEL_WORDS.get(name, f"the trainable's {name.replace('_', ' ')}")
    return option(name, "TrainJob", JOB_FLAGS.get(name))


# Whether the run being resumed was a TrainJob's (``lowdim train``, ``run_train``); False for the low-level
# ``train(model, subjects, trainable, config)``, whose caller passed a TrainConfig and a trainable instead.
_FROM_A_JOB: contextvars.ContextVar[bool] = contextvars.ContextVar("lowdim_from_a_train_job", default=True)
# What a low-level caller passed in place of a TrainJob field (the rest: the trainable's own).
LOW_LEVEL_WORDS = {"resolution": "the subjects' picture size", "dtype": "dtype of the model's weights",
                   "space_options": "the trainable's space config", "initial": "the initial adapter"}


@contextlib.contextmanager
def reader_of(trainable: object) -> Iterator[None]:
    """Word a resume's refusal for whoever made ``trainable``: a TrainJob's run records its recipe on it
    (``modes.record_recipe``, made by ``lowdim train``); one the caller built for ``train()`` has none."""
    extra = (getattr(trainable, "metadata", None) or {}).get("extra") or {}
    record = getattr(trainable, "record", None) or {}
    made_by = [str(part.get("made_by", "")) for part in (extra, record) if isinstance(part, dict)]
    with scoped(_FROM_A_JOB, any(maker.startswith("lowdim train") for maker in made_by)):
        yield


def leave_out(name: str) -> str:
    return either(f"leave {JOB_FLAGS.get(name, '--' + name.replace('_', '-'))} out", f"leave {name}= out")


def space_named(space: str) -> str:
    return either(f"--space {space}", f"TrainJob(space={space!r})")


def unread_settings(mode: str, merge_frozen: bool) -> tuple[tuple[str, str], ...]:
    """What ``mode`` does not read, as (TrainJob field, the line that refuses it), in the reader's words; the
    first one given is named. ``merge_frozen``: the job's, which its own line names as set."""
    full, init = either("--full", "TrainJob(full=True)"), job_option("initial")
    no_adapter = f"{full} trains the model's own weights, with no adapter"
    not_full = f"{job_option('train_text_encoder')} only applies with {full}, which trains the model's own weights"
    merge = either("--merge-frozen" if merge_frozen else "--no-merge-frozen", f"TrainJob(merge_frozen={merge_frozen})")
    no_init = (f"{merge} says whether {init}'s initial adapter is folded into the weights, and there is no "
               f"{either('--init', 'initial=')}: leave it out")
    space, space_options, layers = job_option("space"), job_option("space_options"), job_option("layers")
    return {
        "full": (("initial", f"{init} finetunes a LoRA on top of an adapter, and {full} trains the model's own "
                             f"weights instead: choose one"),
                 ("space", f"{space} picks an adapter's weight space, and {no_adapter}: {leave_out('space')}"),
                 ("space_options", f"{space_options} sets options of the {either('--space', 'space=')} adapter, and "
                                   f"{no_adapter}: {leave_out('space_options')}"),
                 ("layers", f"{layers} picks the layers an adapter trains, and {full} trains the whole UNet (add "
                            f"{either('--train-text-encoder', 'train_text_encoder=True')} for the text encoder "
                            f"too): {leave_out('layers')}"),
                 ("merge_frozen", no_init),
                 ("save_dtype", f"{job_option('save_dtype')} sets the tensors of an adapter file, and {full} saves "
                                f"the model itself, in the dtype it trained in ({job_option('dtype')}): "
                                f"{leave_out('save_dtype')}")),
        "relaxed": (("space", f"{space} picks the space of an adapter trained from scratch, and {init} trains a LoRA "
                              f"on top of the initial adapter, whose rank is {either('--rank', 'rank=')} (default 4): "
                              f"{leave_out('space')}"),
                    ("space_options", f"{space_options} sets options of {either('--space', 'space=')}, and {init} "
                                      f"trains a LoRA whose one setting is its rank: use "
                                      f"{either('--rank N', 'rank=N')} (default 4) instead of "
                                      f"{either('--set', 'space_options=')}"),
                    ("layers", f"{layers} picks the layers of an adapter trained from scratch, and {init}'s LoRA "
                               f"trains on the initial adapter's own layers: {leave_out('layers')}"),
                    ("train_text_encoder", f"{not_full}; {init}'s LoRA trains the initial adapter's layers: leave it "
                                           f"out")),
        "adapter": (("train_text_encoder", f"{not_full}; an adapter trains the layers {either('--layers', 'layers=')} "
                                           f"picks (the text encoder's too by default): "
                                           f"{either('add --full', 'set full=True')}, or leave it out"),
                    ("merge_frozen", no_init)),
    }[mode]


# How a resume of `train` names what its checkpoint recorded otherwise (``checkpoints.restore``'s ``worded``): a
# TrainConfig field, or a key of the trained state's signature (``modes``), by the flag that set it under the
# ``lowdim`` command, from Python by the TrainJob field that sets it (``RESUME_JOB_FIELDS``), else TrainConfig's.
RESUME_FLAGS = {"learning_rate": "--lr", "layer_set": "--layers"}
# Recorded keys a TrainJob field sets: that field. The rate: TrainJob's own, which --lr sets (TrainConfig's too).
RESUME_JOB_FIELDS = {"learning_rate": "learning_rate", "space": "space", "layer_set": "layers", "layers": "layers",
                     "dropout": "dropout", "merge_frozen": "merge_frozen", "text_encoder": "train_text_encoder"}
# On/off settings as the command line says each side: (on, off).
RESUME_SWITCHES = {"augment": ("--augment", "--no-augment"),
                   "merge_frozen": ("--merge-frozen", "--no-merge-frozen"),
                   "text_encoder": ("--train-text-encoder", "no --train-text-encoder")}
# TrainConfig fields `lowdim train` has no flag for (a run from Python set them): named by the field.
NO_FLAG = ("max_grad_norm", "weight_decay", "optimizer", "keep_styles", "style_prompts")
# Signature keys an --init run takes from its initial adapter, not from an option of its own.
FROM_THE_INITIAL_ADAPTER = ("seed", "frozen_part", "layer_set", "layers")


def resume_differences(key: str, stored: dict, current: dict) -> list[str]:
    """A setting a checkpoint recorded otherwise, as ``lowdim train`` names it: ``--lr (0.002 there, 0.01 now)``,
    ``--augment there, --no-augment now``, ``--set rank (1 there, 2 now)``; the key ``trainable`` (the signature of
    what trains) as the flags that chose it, its consequences left out (another --space's whole config, and the
    default rate that followed another mode: ``rate_followed``)."""
    from lowdim_sd.checkpoints import LEFT_OUT_AT_DEFAULT, TRAINABLE

    if key == TRAINABLE:
        return _signature_differences(stored.get(key) or {}, current.get(key) or {})
    # --lr left out follows --space, --full or --init, whose own line the signature's adds: one change, said once
    if key == "learning_rate" and rate_followed(stored.get(key), _rate_mode(stored.get(TRAINABLE) or {})):
        return []
    default = LEFT_OUT_AT_DEFAULT.get(key)
    there, now = stored.get(key, default), current.get(key, default)
    if key in RESUME_SWITCHES:
        return [_switched(key, there, now)]
    return [worded_change(_named(key), there, now)]


def _named(key: str) -> str:
    """The option that sets a recorded ``key``: its flag under the ``lowdim`` command; from Python its TrainJob
    field, else its TrainConfig field, else (a key this lowdim has no field for) by its name."""
    from lowdim_sd.train import TrainConfig

    flag = key if key in NO_FLAG else RESUME_FLAGS.get(key, "--" + key.replace("_", "-"))
    config_field = key in {setting.name for setting in fields(TrainConfig)}
    if key in RESUME_JOB_FIELDS and _FROM_A_JOB.get():
        return option(RESUME_JOB_FIELDS[key], "TrainJob", flag)
    if key in RESUME_JOB_FIELDS and not config_field:  # the low-level train()'s trainable set it
        return job_option(key)
    if config_field:
        return option(key, "TrainConfig", flag)
    return either(flag, f"the training setting {key!r}")


def _switched(key: str, there: object, now: object) -> str:
    return worded_switch(_named(key), RESUME_SWITCHES[key], there, now)


def _mode(signature: dict) -> str:
    """full, init or adapter. A stack whose frozen parts carry their adapters' seeds is --init's (``relax_rank``),
    not one --space stack trains from scratch."""
    if "full" in signature:
        return "full"
    components = (signature.get("space_config") or {}).get("components") or []
    relaxed = len(components) > 1 and all("seed" in part for part in components[:-1])
    return "init" if signature.get("space") == "stack" and relaxed else "adapter"


def _rate_mode(signature: dict) -> object:
    """The mode whose default rate a run of ``signature`` had (``lowdim_sd.defaults.learning_rate``)."""
    return {"full": "full", "init": "relaxed"}.get(_mode(signature), signature.get("space"))


def _signature_differences(there: dict, now: dict) -> list[str]:
    mode = _mode(there)
    if mode != _mode(now):  # another kind of run: its flag says it, not the keys the other kind lacks
        flags = {"full": either("--full", "TrainJob(full=True)"), "init": either("--init", "TrainJob(initial=...)")}
        old, new = flags.get(mode), flags.get(_mode(now))
        return [f"{old or 'no ' + str(new)} there, {new or 'no ' + str(old)} now"]
    from lowdim_sd.checkpoints import LEFT_OUT_AT_DEFAULT

    lines = []
    for key in sorted(set(there) | set(now)):
        old, new = there.get(key, LEFT_OUT_AT_DEFAULT.get(key)), now.get(key, LEFT_OUT_AT_DEFAULT.get(key))
        if old != new:
            lines += _signature_line(mode, key, old, new, there, now)
    return list(dict.fromkeys(lines))  # the initial adapter is named once, whichever of its keys differ


def _signature_line(mode: str, key: str, old: Any, new: Any, there: dict, now: dict) -> list[str]:
    if mode == "init" and key in FROM_THE_INITIAL_ADAPTER:
        return [_initial_adapter_line(there, now)]
    if key == "full":
        return [_switched("text_encoder", "text_encoder" in old, "text_encoder" in new)]
    if key in ("space_config", "frozen_part") and there.get("space") != now.get("space"):
        return []  # another space's config and frozen part: --space says it
    if key == "space_config":
        return [_config_line(mode, path, a, b, there, now) for path, a, b in leaves((), old, new)]
    if key == "layers":
        return [] if there.get("layer_set") != now.get("layer_set") else [f"{_named(key)} ({old} layers there, "
                                                                          f"{new} now)"]
    if key == "subjects":
        return [f"the subjects ({', '.join(old or [])} there, {', '.join(new or [])} now)"]
    if key == "frozen_part":
        return [changed("the adapter's frozen part", old, new)]
    return [worded_change(_named(key), old, new)]


def _config_line(mode: str, path: tuple, old: object, new: object, there: dict, now: dict) -> str:
    """A differing space option: ``--set KEY``; under --init, its LoRA's rank (``--rank``), ``--merge-frozen``, or
    one of the initial adapter's own."""
    if mode == "adapter":
        return worded_change(f"{job_option('space_options')} {'.'.join(map(str, path))}", old, new)
    if path == ("merge_frozen",):
        return _switched("merge_frozen", old, new)
    last = len((there.get("space_config") or {}).get("components") or []) - 1
    if path[:2] == ("components", last) and path[2:] == ("config", "rank"):
        return worded_change(job_option("rank"), old, new)
    if path[:1] == ("components",) and path[1:2] != (last,):
        return _initial_adapter_line(there, now)
    return worded_change(f"the {job_option('initial')} LoRA's " + ".".join(map(str, path)), old, new)


def _initial_adapter_line(there: dict, now: dict) -> str:
    old, new = there.get("frozen_part"), now.get("frozen_part")
    frozen = f": frozen part {old} there, {new} now" if old != new else ""
    return f"{job_option('initial')} (another initial adapter{frozen})"
