"""The face photo: checked as it is dropped, and shown cut as personalization will cut it.

The preview refuses what training would refuse (a photo too small for the model, no face), with the same
line, so a run never starts on a photo it will throw out after loading the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from lowdim import json_text
from lowdim.errors import LowdimError, first_line
from lowdim.files import FORMAT
from lowdim.foreign_files import safetensors_metadata
from lowdim.paths import expand_user
from lowdim_sd.image_names import animation_frames, unreadable_format, unreadable_photo_line
from lowdim_sd.ui.checks import NotOffered, check_model, in_page_terms

# A photo beyond this is refused before it is decoded. 50 MP takes the largest ordinary phone frames (48 MP
# 8064x6048, 50 MP 8160x6120), which the CLI reads without a word; PIL's own warning size (89 MP) would pass photos
# that the upload cap (cli/ui_command.py: 200 MB, a 50 MP photo at 4 bytes a pixel) may refuse before this check.
MAX_PIXELS = 50_000_000
PREVIEW_SIDE = 256  # the crop shown before training; what trains is cut the same way at the model's size


@dataclass
class CropPreview:
    image: Image.Image
    faces: int  # faces found (0 when the model uses photos as they are)
    message: str


def check_photo(path: str | Path, whole: bool = True) -> Path:
    """The uploaded file, refused in one line unless it is an image of at most MAX_PIXELS pixels and, with
    ``whole``, its data is all there (decoded now). Without it only the header is read: for pictures a job skips
    with its own reason when unreadable (eval's generated pictures), so one broken picture does not refuse all."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # PIL's warning of a photo over its own limit: refused below, by size
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only: a huge photo is refused before decoding
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise too_large(path.name, width * height, f"{width}x{height} pixels")
                _refuse_animated(path, image)
                if whole:
                    _decode_all(image)
    except FileNotFoundError:
        raise LowdimError(f"{path.name}: the upload is gone; drop the photo again") from None
    except Image.DecompressionBombError as error:  # over twice PIL's limit: a photo too large, not a bad file
        from lowdim_sd.image_limits import bomb_pixels

        raise too_large(path.name, bomb_pixels(error)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:  # SyntaxError: a bad PNG CRC
        raise LowdimError(_unreadable_line(path, error)) from None
    return path


def _unreadable_line(path: Path, error: Exception) -> str:
    """The line for a dropped file PIL could not read: a photo cut short is a JPEG or PNG already, so only the
    whole file helps; a lowdim adapter (from a run's folder, beside its preview.png) goes in Draw's box."""
    # PIL says "truncated" of data cut short; its UnidentifiedImageError names the path, which may hold that word
    if not isinstance(error, UnidentifiedImageError) and "truncated" in str(error).lower():
        return f"{path.name} is cut short (a partly downloaded or copied photo); drop the whole photo again"
    if path.is_file() and path.stat().st_size == 0:
        return f"{path.name} is empty (0 bytes); drop the photo again"
    kind = unreadable_format(path)
    if kind:  # a HEIC photo (an iPhone's default) is not a damaged file
        return unreadable_photo_line(path.name, kind)
    try:
        metadata = safetensors_metadata(path)
    except OSError:  # a folder, or a file this user may not read: PIL's failure is the line, not this second one
        metadata = None
    if metadata is not None and metadata.get("format") == FORMAT:
        return (f'{path.name} is a lowdim adapter, not a photo: drop it in Draw\'s "Or draw an adapter file" box '
                f"to draw with it")
    what = "a .safetensors file, not a photo" if metadata is not None else \
        f"not an image this page can read ({_why_unreadable(error)})"
    return f"{path.name} is {what}; use a JPEG, PNG or WebP photo"


def _refuse_animated(path: Path, image: Image.Image) -> None:
    """Personalize would learn an animated picture's first frame, which may be blank (a fade-in): refused here,
    where the page's other checks refuse, as the CLI warns of it."""
    frames = animation_frames(image)
    if frames > 1:
        raise LowdimError(f"{path.name} is animated ({frames} frames), and only its first frame would be used: "
                          f"drop a still photo (JPEG, PNG or WebP)")


def _decode_all(image: Image.Image) -> None:
    """Decode every byte of a photo's data, so that one cut short (a partly downloaded file, whose header reads)
    is refused as it is dropped, not after the run has loaded the model. A JPEG is decoded at 1/8 scale: its
    whole data is still read, at a fraction of the cost."""
    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))  # no-op for formats other than JPEG
    image.load()


def _why_unreadable(error: Exception) -> str:
    """Why PIL could not open a photo, in the page's words: its own text ("cannot identify image file
    '/tmp/gradio/.../notes.txt'", "Truncated File Read") names its internals and the upload's temporary path."""
    if isinstance(error, UnidentifiedImageError):  # no format PIL knows, or one whose header is broken
        return "not a picture file, or a damaged one"
    return "the file is damaged"


def too_large(name: str, pixels: int | None, size: str = "") -> LowdimError:
    """The line for a photo over MAX_PIXELS: its size, as much of it as is known."""
    megapixels = f"{pixels / 1e6:.0f} MP" if pixels else f"over {MAX_PIXELS // 1_000_000} MP"
    said = f"{size} ({megapixels})" if size else megapixels
    limit = f"{MAX_PIXELS // 1_000_000} MP"
    return LowdimError(f"{name} is {said}; photos up to {limit} are accepted: scale it down to {limit} or less")


def crop_preview(path: str | Path, model: str, face_index: int | None = None,
                 crop: bool | None = None) -> CropPreview:
    """The picture personalization will train on, cut as it will be, and what to tell the user about it."""
    from lowdim_sd.face_inputs import resolve_crop
    from lowdim_sd.images import load_image, to_pil

    path = check_photo(path)
    model = check_model(model)  # the model personalize would use, so the preview is the crop it trains on
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crop = resolve_crop(crop, model)
        if not crop:  # training's own size check (load_image's: half the model's side), with its line
            check_no_face_cut(face_index, model)
            side = training_side(model)
            picture = to_pil(load_image(path, PREVIEW_SIDE, min_side=side // 2 if side else 1)[None])[0]
            return CropPreview(picture, 0, _first_note(caught, f"{model} uses the photo as it is (centre square)"))
        from lowdim_sd.faces import crop_face, detect_faces
        from lowdim_sd.images import open_rgb

        photo = open_rgb(path)
        with advice_for_the_page():
            faces = len(detect_faces(photo, path.name))
            check_face_found(face_index, faces, path.name)
            picture = crop_face(photo, PREVIEW_SIDE, index=face_index, name=path.name)
    if faces > 1:
        chosen = 0 if face_index is None else face_index
        return CropPreview(picture, faces, f"{faces} faces found: showing face {chosen} (0 is the largest); "
                                           f"pick another with 'Face'")
    return CropPreview(picture, faces, _first_note(caught, "face found and aligned: this crop is what the model "
                                                           "learns"))


def check_face_choice(photo: Path, model: str, face_index: int | None, crop: bool | None = None) -> None:
    """The *Face* chosen, refused in one line naming it unless the photo, cut as ``model`` cuts it, has that face.
    The page offers only the faces its preview found; another client may send any number, which training
    would refuse only after loading the model, and in the CLI's terms (--face-index)."""
    from lowdim_sd.face_inputs import resolve_crop

    if face_index is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missing faces extra: the preview and the run each say so
        crop = resolve_crop(crop, model)
    if not crop:
        check_no_face_cut(face_index, model)
        return
    from lowdim_sd.faces import detect_faces
    from lowdim_sd.images import open_rgb

    with advice_for_the_page():
        check_face_found(face_index, len(detect_faces(open_rgb(photo), photo.name)), photo.name)


def check_no_face_cut(face_index: int | None, model: str) -> None:
    """For a model that uses the photo as it is, the one face there is: Face 0 (or none chosen)."""
    if face_index:
        raise NotOffered(f"Face {face_index} asked for, but no face is cut out of the photo for {model} (it "
                         f"uses the photo as it is): leave Face at 0")


def check_face_found(face_index: int | None, faces: int, name: str) -> None:
    """No face at all is training's own line (``FaceNotFound``); a number past the faces found is this one."""
    if face_index is not None and faces and not 0 <= face_index < faces:
        raise NotOffered(f"Face {face_index} asked for, but {name} has {faces} face{'s' if faces > 1 else ''}: "
                         f"pick 0{f' to {faces - 1}' if faces > 1 else ''} (0 is the largest)")


def training_side(model: str) -> int | None:
    """The side in pixels ``model`` trains at, read from its diffusers folder's configs without loading it;
    None where there is no such folder here (a hub id, a single file): training checks those itself."""
    from lowdim_sd.registered_models import registered_entry

    entry = registered_entry(model)
    folder = expand_user(str(getattr(entry.value, "source", "") if entry else model))
    try:
        unet = json_text.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        vae = json_text.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        # diffusers' vae_scale_factor: the VAE halves the side once between each pair of its blocks
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def advice_for_the_page() -> Iterator[None]:
    """A face not found, said with what the page offers (another photo) instead of the CLI's --no-crop: the
    check speaks the CLI's words (``command_line``), which the page's terms rewrite."""
    from lowdim.option_words import command_line
    from lowdim_sd.faces import FaceNotFound

    try:
        with command_line():
            yield
    except FaceNotFound as error:
        raise FaceNotFound(in_page_terms(str(error))) from None


def _first_note(caught: list, otherwise: str) -> str:
    """The first warning worth showing (a missing extra, a small face), else ``otherwise``."""
    notes = [first_line(w.message) for w in caught if "upscaling" not in str(w.message)]
    return notes[0] if notes else otherwise
