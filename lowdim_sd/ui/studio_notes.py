"""The notes a personalization's run record keeps (``run.json``, shown on the page): the run's own warnings worth
one (``run_notes``), and what ran instead when a hypernetwork was asked for on a model that ships none
(``ships_a_hypernet``, ``no_hypernet_note``). Plain wording, no Studio state: kept apart so studio.py stays small."""

from __future__ import annotations

import warnings
from pathlib import Path

from lowdim.errors import LowdimError, first_line
from lowdim.option_words import counted


def ships_a_hypernet(model: str) -> bool:
    """Whether the installed model ``model`` names ships a hypernetwork (TinyFaces does, by name or by its folder;
    SD1.5, another folder, a file or a hub id do not), told without loading anything."""
    from lowdim_sd.personalize_hypernet import default_hypernet
    from lowdim_sd.registered_models import sd_backend

    try:
        backend = sd_backend(model)  # a name, an alias, or the registered model's own folder
    except LowdimError:  # a name two plugins claim, or no SD model: loading it says so
        return False
    return backend is not None and default_hypernet(backend) is not None


def no_hypernet_note(model: str, steps: int | None) -> str:
    """What a run asked to start from a prediction ran instead, on a model that ships no hypernetwork."""
    from lowdim_sd.defaults import SCRATCH_STEPS

    ran = SCRATCH_STEPS if steps is None else steps
    recipe = ("the recipe from zero" if ran == SCRATCH_STEPS
              else f"from zero the recipe is {SCRATCH_STEPS}: empty Finetune steps")
    return (f"{model} ships no hypernetwork: the LoRA started from zero and trained {counted(ran, 'step')} "
            f"({recipe})")


def run_notes(caught: list[warnings.WarningMessage], work: Path, final: Path) -> list[str]:
    """The run's warnings worth a note, each once, a path into its hidden work folder said as the folder it is
    renamed to once done (the hidden one is gone by the time the note is read)."""
    notes = []
    for warning in caught:
        message = warning.message  # a Warning: warnings.warn makes one of a str
        note = first_line(message if isinstance(message, Warning) else Warning(message))
        for spelling in sorted({str(work), str(work.resolve())}, key=len, reverse=True):
            note = note.replace(spelling, str(final))
        if _worth_a_note(warning) and note not in notes:
            notes.append(note)
    return notes


def _worth_a_note(caught: warnings.WarningMessage) -> bool:
    """lowdim's own warnings about the run (a skipped preview, say), not libraries' deprecations; and not the
    export format one: both exports are wanted, and the page says which tool reads which."""
    return (caught.category is UserWarning and _top_package(caught.filename).startswith("lowdim")
            and "ComfyUI reads only the kohya format" not in str(caught.message))


def _top_package(filename: str) -> str:
    """'lowdim_sd' for .../lowdim_sd/ui/studio.py, 'diffusers' for .../diffusers/utils/x.py."""
    folder, top = Path(filename).parent, ""
    while (folder / "__init__.py").is_file():
        top, folder = folder.name, folder.parent
    return top
