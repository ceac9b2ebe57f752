"""Which files are pictures, known without PIL: ``lowdim show`` and other header readers run on a core
install, where the sd extra (and with it PIL) is absent. The folder scan every reference folder goes through
(``collect_images``), and which photo format a file PIL cannot read holds, told from its first bytes, so the line
for it names the format instead of calling the photo corrupt."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from lowdim.errors import LowdimError
from lowdim.option_words import counted

# .jfif is what browsers and Windows often save a JPEG as; .avif is read by the PIL builds of today (images.py's
# folder scan names an AVIF as unreadable where this one cannot read it, as it names a HEIC).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif"})
# Photo formats PIL reads only with a plugin that lowdim does not load (HEIC, the iPhone camera's default), or that
# older PIL builds lack (AVIF): a file of these is named with its format and the way forward, not "non-image".
PLUGIN_PHOTO_EXTENSIONS = {".heic": "HEIC", ".heif": "HEIC", ".hif": "HEIC", ".avif": "AVIF"}
# The brands an ISO base media file (HEIF, AVIF) names in its leading 'ftyp' box: the first, then compatible ones.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_IMAGE_BRANDS = frozenset({b"mif1", b"msf1"})  # a still image or sequence in HEIF's container, codec unnamed

# Formats whose further frames are an animation, of which a loader reads the first only. Not MPO: a camera's JPEG
# with a preview or a second view appended has frames too, and its first is the photo itself.
_ANIMATED_FORMATS = frozenset({"GIF", "WEBP", "PNG", "AVIF"})


class ImageError(LowdimError):
    """A reference image or folder that cannot be used: missing, unreadable, or too small."""


def sniffed_photo_format(path: str | os.PathLike) -> str | None:
    """'HEIC' or 'AVIF' for a file whose first bytes are such a photo's 'ftyp' box (whatever its name), else None.

    A bare ``mif1`` brand is HEIF's container without a codec named: a HEIC photo unless it names AVIF."""
    try:
        with open(path, "rb") as file:
            head = file.read(64)
    except OSError:
        return None
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12], *(head[start:start + 4] for start in range(16, box_end - 3, 4))}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    return "HEIC" if brands & (_HEIC_BRANDS | _IMAGE_BRANDS) else None


def animation_frames(image: object) -> int:
    """How many frames an opened PIL picture animates through: 1 for a still one, a camera's MPO JPEG included."""
    if getattr(image, "format", None) not in _ANIMATED_FORMATS:
        return 1
    return int(getattr(image, "n_frames", 1) or 1)


def unreadable_photo_line(name: str, kind: str, count: int = 1) -> str:
    """'X is a HEIC photo, which this install cannot read: convert it to JPEG or PNG' (of ``count`` files: 'them').

    Only advice that works: lowdim never registers pillow-heif's opener, so installing it would change nothing."""
    article = "an" if kind[0] in "AEIOU" else "a"
    what = f"is {article} {kind} photo" if count == 1 else f"are {kind} photos"
    it = "it" if count == 1 else "them"
    phone = " (an iPhone saves JPEGs with Settings > Camera > Formats > Most Compatible)" if kind == "HEIC" else ""
    return f"{name} {what}, which this install cannot read: convert {it} to JPEG or PNG{phone}"


# ------------------------------------------------------------------------------------------- collecting


def collect_images(paths: str | os.PathLike | Sequence[str | os.PathLike],
                   subfolder_hint: str | None = None) -> list[Path]:
    """The image files named by ``paths``: a folder, one file, or a list of files and folders.

    Folders are scanned non-recursively and sorted by name, keeping files whose extension is an image
    extension; other files are skipped with one warning (hidden files such as .DS_Store silently), photos this
    install cannot read (HEIC) with another naming their format, and so are sub-folders holding pictures, named
    with their counts and ``subfolder_hint`` (what to do instead; default: move the pictures up). Files listed by
    name are kept whatever their extension: the user asked for them, and load_image reports it clearly if one is
    not a picture.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ImageError("no reference images given")
    found: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found.extend(_scan_folder(item, subfolder_hint or f"move them up into {item} to use them"))
        elif item.is_file():
            found.append(item)
        else:
            raise ImageError(f"image file {item} not found")
    return found


def _scan_folder(folder: Path, subfolder_hint: str) -> list[Path]:
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    files = sorted(p for p in entries if p.is_file())
    unreadable = {p.name: kind for p in files if (kind := _unreadable_here(p.suffix.lower()))}
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and p.name not in unreadable]
    skipped = [p.name for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS and p.name not in unreadable]
    links, folders = _links_up(folder, sorted(p for p in entries if p.is_dir()))
    nested = _sub_folders_with_images(folders)
    elsewhere = f"; its sub-folders hold some, {some_names(nested)}: {subfolder_hint}" if nested else ""
    if not images and unreadable:
        raise ImageError(f"folder {folder} holds no image files this install can read: "
                         f"{_unreadable_said(unreadable)}{elsewhere}")
    if not images:
        extensions = " ".join(sorted(IMAGE_EXTENSIONS))
        raise ImageError(f"folder {folder} holds no image files (looked for {extensions}){elsewhere}")
    if skipped:
        warnings.warn(f"skipped {counted(len(skipped), 'non-image file')} in {folder}: {some_names(skipped)}",
                      stacklevel=3)
    if unreadable:
        warnings.warn(f"skipped {counted(len(unreadable), 'photo')} in {folder}: {_unreadable_said(unreadable)}",
                      stacklevel=3)
    if links:  # its own pictures, read above: "move them up" would send the user looking for other ones
        warnings.warn(f"skipped {counted(len(links), 'link')} in {folder} to the folder itself or a folder above it, "
                      f"not sub-folders of other pictures: {some_names(links)}", stacklevel=3)
    if nested:  # read one level only: a folder of photos often keeps rejects or other people below it
        warnings.warn(f"skipped {counted(len(nested), 'sub-folder')} of {folder} and the images in them, "
                      f"{some_names(nested)}: {subfolder_hint}", stacklevel=3)
    return images


def unreadable_format(path: str | os.PathLike) -> str | None:
    """'HEIC' or 'AVIF' for a file holding such a photo (by its first bytes) that PIL here cannot read: a broken
    file of a format PIL reads is just broken."""
    kind = sniffed_photo_format(path)
    suffix = next((suffix for suffix, its in PLUGIN_PHOTO_EXTENSIONS.items() if its == kind), None)
    return _unreadable_here(suffix) if suffix else None


def _unreadable_here(suffix: str) -> str | None:
    """'HEIC' or 'AVIF' for a photo's extension that PIL here reads with no plugin for; None for any other."""
    kind = PLUGIN_PHOTO_EXTENSIONS.get(suffix)
    if kind is None:
        return None
    try:
        from PIL import Image
    except ImportError:  # a core install: no picture is read at all
        return kind
    return None if suffix in Image.registered_extensions() else kind


def _unreadable_said(unreadable: dict[str, str]) -> str:
    """The unreadable photos, by format: 'a.heic, b.heic are HEIC photos, which this install cannot read: ...'."""
    kinds = sorted(set(unreadable.values()))
    return "; ".join(unreadable_photo_line(some_names(names), kind, len(names)) for kind in kinds
                     for names in [[name for name, its in unreadable.items() if its == kind]])


def _links_up(folder: Path, folders: list[Path]) -> tuple[list[str], list[Path]]:
    """The sub-folders that are links to ``folder`` itself or a folder above it, said as such, and the others.

    A link such as ``selfdir -> .`` holds the folder's own pictures: not a sub-folder whose pictures to move up."""
    here = _real(folder)
    links: list[str] = []
    others: list[Path] = []
    for sub in folders:
        target = _real(sub)
        if target == here:
            links.append(f"{sub.name} (a link to {folder} itself)")
        elif target in here.parents:
            links.append(f"{sub.name} (a link to {target}, above {folder})")
        else:
            others.append(sub)
    return links, others


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13): is_dir() already left it out
        return Path(os.path.abspath(path))


def _sub_folders_with_images(folders: list[Path]) -> list[str]:
    """['sub (2 images)', 'more (1 image)'] for the folders holding image files at any depth; hidden folders
    and files left out, as the scan leaves them out."""
    counts = [(folder.name, _images_below(folder)) for folder in folders]
    return [f"{name} ({count} image{'s' if count > 1 else ''})" for name, count in counts if count]


def _images_below(folder: Path) -> int:
    count = 0
    for _, subs, names in os.walk(folder):  # links to folders not followed: no loops
        subs[:] = [sub for sub in subs if not sub.startswith(".")]
        count += sum(not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS for name in names)
    return count


def some_names(names: list[str], shown: int = 5) -> str:
    """The first ``shown`` names, then how many more."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
