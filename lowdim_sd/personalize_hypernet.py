"""Which hypernetwork a personalize run predicts with: the one named, or the one the model's backend ships when
it predicts the space and layers asked for; and whether a hypernetwork's layers cover a run's."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lowdim.errors import LowdimError
from lowdim.hyper.storage import HypernetFile, read_hypernet, same_model, target_differences  # load_hypernet's words
from lowdim.injection import LayerSet, covers
from lowdim.option_words import counted, either
from lowdim.spaces.base import Space
from lowdim_sd.defaults import SCRATCH_STEPS
from lowdim_sd.hypernet_folders import refuse_a_folder_without_one
from lowdim_sd.hypernet_records import model_side, warn_about_another_resolution
from lowdim_sd.model_names import canonical_model, name_and_source
from lowdim_sd.modes import resolve_layers
from lowdim_sd.personalize_checks import named, switch

if TYPE_CHECKING:
    from lowdim_sd.personalize import PersonalizeJob


def default_hypernet(backend: Any) -> Path | None:
    """The hypernetwork the model's backend ships, if any (TinyFaces does)."""
    path = getattr(backend, "default_hypernet", None)
    return Path(path) if path else None


def resolve_hypernet(job: PersonalizeJob, backend: Any, space: Space,
                     layers: LayerSet) -> tuple[bool, HypernetFile | None, str]:
    """(whether a hypernetwork is in play, the file to predict with, a warning for later), reading a file at
    most once.

    The backend's own hypernetwork counts only when it predicts the space and layers asked for: a
    shipped default must not turn --space/--set/--layers into errors about a file the user never
    named. It is not even opened when it cannot matter (--no-hyper with --steps given). The warning
    that it does not fit waits until the layers are found on the model: a --layers that matches
    nothing is an error, and a warning before it would only mislead.
    """
    if job.hypernet is not None:
        refuse_a_folder_without_one(job.hypernet)
        if job.no_hyper:  # it keeps the file's recipe (the paper's ablation): the file must still be a hypernetwork
            _checked_only(job.hypernet)
            return True, None, ""
        given = read_hypernet(job.hypernet)
        check_header_fits(job.model, given, space, layers)
        # The side personalize reads the photo at: --resolution, else the model's own (its config, not loaded yet);
        # with neither, the file goes on marked, and personalize compares the loaded model's side.
        side = job.resolution or model_side(job.model)
        warn_about_another_resolution(given, side)
        return True, (given if side is not None else SideAfterTheLoad.of(given)), ""
    path = default_hypernet(backend)
    if path is None or (job.no_hyper and job.steps is not None):
        return False, None, ""
    shipped = read_hypernet(path)
    made_for = shipped.made_for
    if made_for[:2] == (space.name, space.config.to_dict()) and predicts_layers(shipped, layers):
        return True, (None if job.no_hyper else shipped), ""
    not_asked = _not_asked(made_for, space, layers)
    unfit = f"{job.model}'s hypernetwork predicts {made_for[0]} on {made_for[2]} layers, {not_asked}"
    if job.only_hyper or job.steps == 0:  # its prediction is all such a run keeps: there is none for what was asked
        hypernet = either("--hypernet CKPT", "PersonalizeJob(hypernet=CKPT)")
        keeping = switch("only_hyper") if job.only_hyper else f"{named('steps')} 0"
        raise LowdimError(f"{keeping} keeps the hypernetwork's prediction alone, and {unfit}: leave those settings "
                          f"at the model's, or pass a hypernetwork made for them ({hypernet})")
    steps = f"{SCRATCH_STEPS} steps unless --steps" if job.steps is None else counted(job.steps, "step")
    return False, None, (f"{unfit}: the {space.name} part stays at zero and only the rank-{job.rank} LoRA on top "
                         f"trains ({steps}); `lowdim train --space {space.name}` trains the space itself")


@dataclass(frozen=True)
class SideAfterTheLoad(HypernetFile):
    """A given hypernetwork whose targets' side could not be compared before the model loaded (no --resolution, and
    no config to read: a single-file checkpoint, a hub model not downloaded yet); the loaded model's side is."""

    @classmethod
    def of(cls, hypernet: HypernetFile) -> SideAfterTheLoad:
        return cls(*(getattr(hypernet, field.name) for field in fields(hypernet)))


def warn_about_a_side_read_after_the_load(hypernet: HypernetFile | None, side: int) -> None:
    """The resolution warning of ``resolve_hypernet``, given once the loaded model tells its side, for a file whose
    side could not be compared before the load (and only then: a run is told once)."""
    if isinstance(hypernet, SideAfterTheLoad):
        warn_about_another_resolution(hypernet, side)


def check_header_fits(model: str, hypernet: HypernetFile, space: Space, layers: LayerSet) -> None:
    """What ``load_hypernet`` compares that the file's header tells without the model: the model it was made for,
    its space and options, its layer set; refused in load_hypernet's words before a model load of seconds (minutes
    and a download for SD1.5). The layer list needs the model's modules: predict_initial compares it after the load.
    """
    own = hypernet.made_for[2] if predicts_layers(hypernet, layers) else layers.name  # as predict_initial loads it
    recorded = canonical_model(model)
    if not same_model(recorded, hypernet.stored["model"]):
        name_and_source(model)  # a misspelt --model is told as such (as the load would), not as another model
    differences = target_differences(hypernet.stored, model=recorded, space=space, layer_set=own, layers=None,
                                     encoder=None)
    if differences:
        raise LowdimError(f"{hypernet.path} does not fit the requested target: {'; '.join(differences)}")


def _not_asked(made_for: tuple, space: Space, layers: LayerSet) -> str:
    """What of the run's asked target the shipped network was not made for, as the user asked it: the space, the
    options that differ (``--set rank=2``), or the layers."""
    if made_for[0] != space.name:
        return f"not {either('--space', 'PersonalizeJob(space=...)')} {space.name}"
    there, now = made_for[1], space.config.to_dict()
    if there != now:
        differ = ", ".join(f"{key}={now.get(key)} (it: {there.get(key)})" for key in sorted(set(there) | set(now))
                           if there.get(key) != now.get(key))
        return f"not {either('--set', 'PersonalizeJob(space_options=...)')} {differ}"
    return f"not {either('--layers', 'PersonalizeJob(layers=...)')} {layers.name}"


def _checked_only(path: Path) -> None:
    """A missing file, or one that is no hypernetwork, is an error even when its prediction is dropped; its
    tensors (gigabytes with a ViT-H encoder) are not read."""
    from lowdim.file_fit import format_version_problem
    from lowdim.files import read_checked
    from lowdim.hyper.storage import FORMAT, FORMAT_VERSION

    _, header = read_checked(Path(path), FORMAT, "hypernetwork", LowdimError, load_tensors=False)
    if problem := format_version_problem(header, "hypernetwork", FORMAT_VERSION):
        raise LowdimError(f"{path}: {problem}")


def predicts_layers(hypernet: HypernetFile, layers: LayerSet) -> bool:
    """Whether the hypernetwork predicts every layer of ``layers``: its own set, or one that covers it
    (`--layers unet` with a unet+text network keeps the UNet part of its prediction).

    Decided from the patterns. Globs also select 1x1 convolutions, which a named set may leave out; a
    glob that really meets one on the model is named by predict_initial, so the types do not decide here.
    """
    made_for = hypernet.made_for[2]
    if made_for == layers.name:
        return True
    try:
        own = resolve_layers(made_for, hypernet.metadata["model"])  # the set of the model it was made for
    except LowdimError:  # a set this version does not know: load_hypernet names the difference
        return False
    return covers(own, replace(layers, types=tuple(t for t in layers.types if t in own.types)))
