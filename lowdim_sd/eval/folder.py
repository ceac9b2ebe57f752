"""The eval folder: generated images plus ``prompts.json`` (or ``prompts.csv``) naming each one's prompt.

prompts.json::

    {"token": "sks",                                   optional: the identifier CLIP-T removes
                                                       (else generate's "settings" record's)
     "references": ["../me/face.jpg"],                 optional: references of every image
     "images": [{"image": "000.png", "prompt": "a sks face at night",
                 "references": ["refs/other.jpg"]}]}   optional per image: its own references

``"images"`` may also map file names to prompts: ``{"000.png": "a sks face at night"}``. prompts.csv
has a header ``image,prompt[,references]``, references separated by ``;``. Paths are relative to
the folder; a reference may be a folder of images. ``lowdim generate`` writes a prompts.json with
each image's prompt (with ``[V]``) and seed, and a ``"settings"`` record of how it drew them (read here
for its identifiers alone: ``token``, the word [V] became, and each adapter's ``token``, when the file has no
``"token"`` of its own), but no references: give them on the command line. Prompts files are UTF-8,
with or without a byte order mark (Excel's "CSV UTF-8" writes one). Each image is listed once. With
both files, prompts.json is used (an EvalWarning says so). References are chosen by ``ReferenceChoice``:
each file once, never a generated picture being scored nor generate's grid.png.

A bad prompts file is an :class:`EvalFolderError`. A bad image (missing, not an image, tiny) is
skipped with a :class:`SkippedImageWarning` and the rest are evaluated.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from lowdim.metrics import Sample
from lowdim.option_words import counted, either

# The warnings and size limits are imported from here too: they are this module's public names.
from lowdim_sd.eval.image_files import (  # noqa: F401
    MAX_SIDE,
    MIN_SIDE,
    EvalWarning,
    ImageSizeWarning,
    SkippedImageWarning,
    open_image,
    read_image,
    warn_skipped,
)

# The prompts file's reader, its error and its names are this module's public names too.
from lowdim_sd.eval.prompts_file import PROMPT_FILES, Entry, EvalFolderError, PromptsFile, read_prompts  # noqa: F401
from lowdim_sd.eval.reference_images import (  # noqa: F401
    GENERATE_GRID,
    IMAGE_SUFFIXES,
    ReferenceChoice,
    ReferenceImages,
    pictures_in,
)


@dataclass(frozen=True)
class EvalSample(Sample):
    """A Sample whose prompt may hold more identifiers than ``token`` (one per adapter, as ``lowdim generate``
    records them): CLIP-T removes them all."""

    other_tokens: tuple[str, ...] = ()

    def clean_prompt(self) -> str:
        cleaned = super().clean_prompt()
        if not self.other_tokens:
            return cleaned
        return " ".join(word for word in cleaned.split() if word.strip(",.") not in self.other_tokens)


@dataclass
class EvalSet:
    """The samples an eval runs on, in prompts-file order, and the names of the images left out.

    ``references``: the real paths each sample's reference pictures came from; ``shared``: those of the
    references every image without its own is given (both as opened: a file that could not be read is not).
    ``token`` and ``other_tokens``: the identifiers CLIP-T removes (--token, else the prompts file's)."""

    folder: Path
    samples: list[Sample]
    skipped: list[str] = field(default_factory=list)
    references: list[tuple[str, ...]] = field(default_factory=list)
    shared: tuple[str, ...] = ()
    token: str | None = None
    other_tokens: tuple[str, ...] = ()


# -- loading images -----------------------------------------------------------------------------------


def load_eval_set(folder: Path, references: Sequence[Path] = (), token: str | None = None, crop: bool = False,
                  crop_size: int = 512, margin: float = 0.6) -> EvalSet:
    """Read the prompts file and open every image it names, with its references.

    ``references`` (from the command line) replace the file's shared references, and each must be
    usable (else EvalFolderError); an image's own references always win. Each reference file counts once, and
    neither a picture being scored nor generate's grid.png is one of its references (``ReferenceChoice``, with a
    note). ``token`` overrides the file's (and generate's record's). ``crop`` crops references to the face
    (generated images are scored as they are).
    """
    folder, given = Path(folder), [Path(path) for path in references]
    prompts = read_prompts(folder)
    shared = given or [folder / r for r in prompts.references]
    shared_from = either("--references", "EvalJob(references=...)") if given else f"{prompts.path.name}'s references"
    refs, choice = ReferenceImages(crop, crop_size, margin), ReferenceChoice(
        {entry.image: folder / entry.image for entry in prompts.entries})
    refs.require(given)
    tokens = (token, ()) if token else (prompts.token, prompts.other_tokens)
    data, unusable, unread = EvalSet(folder, [], token=tokens[0], other_tokens=tokens[1]), {}, {}
    for entry in prompts.entries:
        image = read_image(folder / entry.image, "generated image")
        if isinstance(image, str):
            warn_skipped(folder / entry.image, "generated image", image)
            unusable[entry.image] = image
            continue
        where = f"its own references in {prompts.path.name}" if entry.references else shared_from
        files = choice.for_image(entry.image, [folder / r for r in entry.references] or shared, where)
        data.samples.append(_sample(image, refs.load(files), entry, *tokens))
        data.references.append(refs.sources(files))
        if entry.references and not data.references[-1]:
            unread[entry.image] = entry.references
    if any(not entry.references for entry in prompts.entries if entry.image not in unusable):
        data.shared = refs.sources(choice.files(shared))
    elif given and data.samples:  # each image's own references win: said, not dropped without a word
        warnings.warn(EvalWarning(f"{shared_from} unused: every image in {prompts.path.name} lists its own "
                                  f"references, which win over them"), stacklevel=2)
    for note in choice.notes():
        warnings.warn(EvalWarning(note), stacklevel=2)
    _warn_unlisted(folder, prompts, refs.opened())
    _warn_without_references(data.samples, unread, prompts.path.name)
    if not data.samples:
        raise EvalFolderError(_nothing_usable(folder, prompts.path.name, unusable))
    data.skipped = list(unusable)
    return data


SHOWN_UNUSABLE = 3  # images the no-usable-image error names; a longer line would hide the error itself


def _nothing_usable(folder: Path, prompts_name: str, unusable: dict[str, str]) -> str:
    """The error when no listed image can be used, naming them and why.

    `lowdim eval` drops the per-image notes when loading fails, so this line is all the user sees.
    """
    if not unusable:
        return f"no generated image to evaluate in {folder}: {prompts_name} lists no image"
    count = len(unusable)
    said = (f"the 1 image listed in {prompts_name} can't be used" if count == 1 else
            f"none of the {count} images listed in {prompts_name} can be used")
    reasons = [f"{name}: {why}" for name, why in list(unusable.items())[:SHOWN_UNUSABLE]]
    more = f"; and {count - SHOWN_UNUSABLE} more" if count > SHOWN_UNUSABLE else ""
    return f"no usable generated image in {folder}: {said}: {'; '.join(reasons)}{more}"


def _sample(image: Image.Image, references: tuple[Image.Image, ...], entry: Entry, token: str | None,
            other_tokens: tuple[str, ...] = ()) -> Sample:
    prompt = entry.prompt
    if "[V]" in prompt:  # a template prompt ("a [V] face"): fill it, or remove "[V]" itself for CLIP-T
        prompt, token = (prompt.replace("[V]", token), token) if token else (prompt, "[V]")
    return EvalSample(image=image, references=references, prompt=prompt, token=token, name=entry.image,
                      other_tokens=other_tokens)


def _warn_unlisted(folder: Path, prompts: PromptsFile, references: list[Path]) -> None:
    listed = {_file_key(folder / e.image) for e in prompts.entries} | {_file_key(p) for p in references}
    unlisted = [p.name for p in pictures_in(folder) if p.name != GENERATE_GRID and _file_key(p) not in listed]
    if unlisted:
        shown = ", ".join(unlisted[:5]) + (f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else "")
        are = "is" if len(unlisted) == 1 else "are"
        warnings.warn(EvalWarning(f"{counted(len(unlisted), 'image')} in {folder} {are} not in {prompts.path.name} and "
                                  f"{are} not evaluated: {shown}"), stacklevel=3)


def _file_key(path: Path) -> Path:
    """Which file a path names, by its resolved folder and its own name.

    By path, not base name: a listed sub/a.png must not cover the folder's own a.png. The folder is
    resolved (./a.png, sub/../a.png, a folder reached through a link), the name is not: a link in the
    folder is an image of its own, listed by its own name.
    """
    try:
        return path.parent.resolve() / path.name
    except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13): compare as written
        return Path(os.path.abspath(path))


def _warn_without_references(samples: list[Sample], unread: dict[str, tuple[str, ...]], prompts_name: str) -> None:
    """A note for the images with no reference to compare with: those whose own references (in the prompts
    file, which win over --references) could not be read apart, as passing -r again would not help them."""
    bare = [s.name for s in samples if not s.references and s.name not in unread]
    if bare:
        how = either("with --references/-r FILE_OR_FOLDER", "as EvalJob(references=...)")
        has, them = ("has", "it as a miss") if len(bare) == 1 else ("have", "them as misses")
        warnings.warn(EvalWarning(f"{counted(len(bare), 'image')} {has} no usable reference image ({bare[0]} ...): "
                                  f"image and identity metrics count {them}; pass the reference "
                                  f"photo(s) {how} or list them in the prompts file"), stacklevel=3)
    if unread:
        name, own = next(iter(unread.items()))
        instead = either("--references", "EvalJob(references=...)")
        has, their, them = (("has", "its", "it as a miss") if len(unread) == 1 else
                            ("have", "their", "them as misses"))
        warnings.warn(EvalWarning(f"{counted(len(unread), 'image')} {has} no usable reference image because "
                                  f"{their} own references in {prompts_name} could not be read ({name}: "
                                  f"{', '.join(own)} ...): image and identity metrics count {them}; an image's own "
                                  f"references win over {instead}, so fix or remove them in {prompts_name}"),
                      stacklevel=3)
