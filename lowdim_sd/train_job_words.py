"""How ``lowdim train``'s checks name a ``TrainJob`` setting: by its flag on the command line (``--init``), by its
field from Python (``TrainJob(initial=...)``); and the lines that refuse a setting a mode never reads."""

from __future__ import annotations

from lowdim.option_words import either, option

# TrainJob's fields whose CLI flag is not the field's name with dashes.
JOB_FLAGS = {"space_options": "--set", "initial": "--init"}


def job_option(name: str) -> str:
    """A TrainJob field as its reader typed it: ``--init`` on the command line, ``TrainJob(initial=...)`` else."""
    return option(name, "TrainJob", JOB_FLAGS.get(name))


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
