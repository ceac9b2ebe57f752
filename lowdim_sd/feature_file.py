"""Precomputed features of a frozen image encoder, so phase 1 can run where the encoder cannot.

A frozen backbone's output for an image never changes, so it can be computed once, on any machine
that has the encoder (``lowdim encoder-features``), and read by ``train-hypernet --features`` on a
machine that has only the hypernetwork's own weights, e.g. a GPU box with no copy of the encoder.

Features are keyed by the image's own 8-bit pixels (a digest of what the encoder sees), not by file
name or identity: a weight folder, its split and ``--extra-images`` all find their images, and an
image the file was not made from is refused by name instead of silently getting another's features.
With ``encoder_pool`` the pooled tokens are stored (1 + pool² per image instead of 257 for DINOv2);
pooling them again is a no-op, so the network reads them exactly as it reads the full ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.files import atomic_save, read_checked
from lowdim.option_words import counted, either, option
from lowdim_sd.faces import DEFAULT_MARGIN

if TYPE_CHECKING:
    from lowdim.hyper.encoder import ImageEncoder

FORMAT = "lowdim.encoder_features"
BATCH = 32
KEY = re.compile(r"[0-9a-f]{20}")  # an image_key
CLASS_TOKEN_BACKBONES = ("vit", "dinov2", "dinov2_with_registers")  # one class token, then the patch grid
OWNER = "write_folder_features"  # the function a Python caller gives the encoder-features settings to
ENCODER_CONFIG = 'hyper={"encoder_config": ...}'  # HyperTrainJob's, as a Python caller gives it
# A write_folder_features parameter as this reader gave it: ``--pool`` (or ``flag=``) on the command line,
# ``write_folder_features(pool=...)`` from Python.
name = partial(option, owner=OWNER)


def image_key(image: Tensor) -> str:
    """A digest of an image in [-1, 1] as 8-bit pixels: equal for the same picture read twice anywhere."""
    pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return hashlib.sha1(pixels.contiguous().numpy().tobytes()).hexdigest()[:20]


def encoder_signature(encoder: ImageEncoder) -> dict:
    """What decides an encoder's features: which backbone, how images are prepared, and the pooling."""
    return {"encoder": str(encoder.hub_id), "input_size": int(encoder.input_size),
            "normalize": str(encoder.normalize), "pool": int(encoder.pool)}


@torch.no_grad()
def compute_features(encoder: ImageEncoder, images: Iterable[Tensor],
                     progress: Callable[[], None] | None = None) -> tuple[list[str], Tensor]:
    """(keys, features (N, T, D)) of each distinct image: the backbone's tokens, pooled if the encoder pools."""
    keys: list[str] = []
    rows: list[Tensor] = []
    batch: list[Tensor] = []

    device = next(encoder.parameters()).device  # --device: the images go where the encoder is

    def flush() -> None:
        tokens = encoder.features(torch.stack(batch).to(device))
        rows.append((encoder.pooled(tokens) if encoder.pool else tokens).float().cpu())
        batch.clear()

    seen = set()
    for image in images:
        key = image_key(image)
        if key not in seen:
            seen.add(key)
            keys.append(key)
            batch.append(image)
        if len(batch) == BATCH:
            flush()
        if progress is not None:
            progress()
    if batch:
        flush()
    if not keys:
        raise LowdimError("no images to compute encoder features of")
    return keys, torch.cat(rows)


def save_features(path: Path, encoder: ImageEncoder, keys: list[str], features: Tensor) -> Path:
    signature = {key: str(value) for key, value in encoder_signature(encoder).items()}
    metadata = {"format": FORMAT, "keys": json.dumps(keys), **signature}
    return atomic_save({"features": features.to(torch.float16)}, metadata, Path(path))


def write_folder_features(folders: list[Path], out: Path, *, encoder_name: str, pool: int, resolution: int,
                          crop: bool, crop_margin: float = DEFAULT_MARGIN, face_index: int | None = None,
                          device: str = "auto", progress: bool = True, overwrite: bool = False) -> tuple[Path, int]:
    """Compute and save the frozen encoder's features of the identity folders' images; (file, images).

    The images are read as a weight folder made with the same crop settings reads them (``crop``,
    ``crop_margin``, ``face_index``: its index.json config), so their keys match that folder's images.
    An existing ``out`` is replaced only with ``overwrite``: it may be the features a training run reads."""
    from lowdim.hyper.encoder import ImageEncoder
    from lowdim_sd import runs
    from lowdim_sd.devices import resolve_device
    from lowdim_sd.face_inputs import load_face_image
    from lowdim_sd.generate import check_resolution

    check_resolution(resolution)
    _check_crop(crop, crop_margin, face_index)
    chosen = resolve_device(device)  # an absent device is one line, before the encoder loads
    if pool < 0:
        raise LowdimError(f"{name('pool')} must be >= 0 (0: every token), got {pool}")
    runs.check_file_target(Path(out))
    if Path(out).is_dir():
        raise LowdimError(f"{out}: is a folder; give {name('out', flag='-o')} a file name (features.safetensors)")
    runs.refuse_overwrite([out], overwrite, other=either("choose another -o", "choose another out"))
    paths = [path for folder in folders for path in _identity_images(folder)]
    if not paths:
        raise LowdimError(f"no images in {', '.join(map(str, folders))}")
    _check_size(paths[0], resolution)
    encoder = ImageEncoder(encoder_name, None, 1, frozen=True, pool=pool).eval().to(chosen)
    images = (load_face_image(path, resolution, crop, crop_margin, face_index) for path in paths)
    with runs.progress(len(paths), "encoder features", enabled=progress, loss=False) as advance:
        keys, features = compute_features(encoder, images, progress=advance)
    return save_features(out, encoder, keys, features), len(keys)


def _check_crop(crop: bool, margin: float, index: int | None) -> None:
    """Crop settings as precompute takes them; without the crop a margin or face index would be silently ignored."""
    if not crop:
        for field, given in (("crop_margin", margin != DEFAULT_MARGIN), ("face_index", index is not None)):
            if given:
                raise LowdimError(f"{name(field)} shapes the face crop, which is off: "
                                  f"{either('add --crop', 'pass crop=True')} (as the weight folders' index.json "
                                  f"config.crop says)")
    from lowdim_sd.faces import check_crop_margin

    check_crop_margin(margin, name("crop_margin"))
    if index is not None and index < 0:
        raise LowdimError(f"{name('face_index')} must be 0 or more, got {index}")


def _check_size(path: Path, resolution: int) -> None:
    """Images far smaller than the resolution asked for (TinyFaces' 32 px at the default 512) are a setting to
    change."""
    from lowdim_sd.images import open_rgb

    side = min(open_rgb(path).size)
    if side < resolution // 2:
        raise LowdimError(f"{path} is {side} px on its shorter side, far below "
                          f"{either(f'--resolution {resolution}', f'resolution={resolution}')}: pass "
                          f"{either(f'--resolution {side}', f'resolution={side}')} (the resolution the weights were "
                          f"precomputed at)")


def _identity_images(folder: Path) -> list[Path]:
    from lowdim_sd.precompute import discover_identities

    return [path for identity in discover_identities(folder) for path in identity.images]


def _keys(path: Path, metadata: dict) -> list[str]:
    """The file's image keys, each an ``image_key`` (20 hex characters) once: what else a file holds is damage."""
    try:
        keys = json_text.loads(metadata["keys"])
    except (KeyError, ValueError):
        keys = None
    if not isinstance(keys, list):
        raise LowdimError(f"{path}: its list of image keys is missing or not JSON")
    if not all(isinstance(key, str) and KEY.fullmatch(key) for key in keys) or len(set(keys)) != len(keys):
        raise LowdimError(f"{path}: its image keys are not a list of distinct keys (20 hex characters, as lowdim "
                          f"encoder-features writes them); the file is damaged")
    return keys


def check_covers(path: Path, images: dict[Path, Callable[[], Tensor]], remedy: str, progress: bool = False) -> None:
    """One line naming the first image (by path) the file holds no features for, and how many it lacks.

    The file's keys come from its header alone, with no encoder to check them against, so this runs before the
    network is built: a file made from other images (or at another resolution or crop) is refused before any
    model loads, not at the first batch lacking one. ``images``: each image's path and how to read it."""
    from lowdim_sd import runs

    _, metadata = read_checked(Path(path), FORMAT, "encoder features", LowdimError, load_tensors=False)
    stored = set(_keys(Path(path), metadata))
    missing = []
    label = either("checking --features", "checking features")
    with runs.progress(len(images), label, enabled=progress, loss=False, transient=True) as advance:
        for image_path, read in images.items():
            if image_key(read()) not in stored:
                missing.append(image_path)
            advance()
    if missing:
        raise LowdimError(f"{path}: no features for {min(missing)} ({len(missing)} of the {len(images)} images this "
                          f"run reads: made from other images, or at another {either('--resolution', 'resolution')} or "
                          f"crop?); {remedy}")


def _network_value(encoder: ImageEncoder, key: str, value: str) -> str:
    """A setting as an error names it: an encoder built from --encoder-config is named as that, not by the
    default hub id it never loaded."""
    if key == "encoder" and getattr(encoder, "from_config", False):
        return (f"a random-init {encoder.backbone.config.model_type} from "
                f"{either('--encoder-config', ENCODER_CONFIG)}")
    return repr(value)


def _check_tokens(path: Path, tokens: int, encoder: ImageEncoder) -> None:
    """Features of as many tokens per image as the encoder gives (1 + pool² pooled): another count would fail
    inside the network's pooling as a reshape error, or blame the encoder setting."""
    expected: int | None
    if encoder.pool:
        expected, how = 1 + encoder.pool ** 2, f"encoder_pool {encoder.pool} gives {1 + encoder.pool ** 2} " \
                                                f"(1 + {encoder.pool}x{encoder.pool})"
    else:
        expected = _unpooled_tokens(encoder)
        how = f"this encoder gives {expected}"
    if expected is not None and tokens != expected:
        count = counted(tokens, "token")
        raise LowdimError(f"{path}: its features hold {count} per image; {how}; the file is damaged or made by "
                          f"another tool")


def _unpooled_tokens(encoder: ImageEncoder) -> int | None:
    """Tokens a ViT or DINOv2 backbone gives per image: its class token, the patch grid and any register tokens
    (None: another backbone, whose count, with or without a class token, is then taken as stored)."""
    config = encoder.backbone.config
    patch = getattr(config, "patch_size", None)
    if getattr(config, "model_type", None) not in CLASS_TOKEN_BACKBONES or not isinstance(patch, int) or patch <= 0 \
            or not encoder.input_size:
        return None
    registers = getattr(config, "num_register_tokens", 0) or 0
    return 1 + (encoder.input_size // patch) ** 2 + int(registers)


class StoredFeatures:
    """A feature file checked against the encoder it stands in for; ``get`` looks images up by their pixels."""

    def __init__(self, path: Path, encoder: ImageEncoder) -> None:
        self.path = Path(path)
        tensors, metadata = read_checked(self.path, FORMAT, "encoder features", LowdimError)
        expected = {k: str(v) for k, v in encoder_signature(encoder).items()}
        differing = [f"{k} {metadata.get(k)!r} (the network's: {_network_value(encoder, k, v)})"
                     for k, v in expected.items() if metadata.get(k) != v]
        if differing:
            raise LowdimError(f"{self.path}: made for another encoder setting: {'; '.join(differing)}")
        keys = _keys(self.path, metadata)
        features = tensors.get("features")
        if features is None or features.dim() != 3 or len(keys) != len(features) \
                or features.shape[-1] != encoder.width:
            raise LowdimError(f"{self.path}: expected a (images, tokens, {encoder.width}) 'features' tensor for "
                              f"{len(keys)} images")
        _check_tokens(self.path, features.shape[1], encoder)
        if not torch.isfinite(features).all():  # else a NaN loss at the first step, blamed on the learning rate
            raise LowdimError(f"{self.path}: tensor 'features' holds NaN or Inf values; refusing it (compute them "
                              f"again with `lowdim encoder-features`)")
        self.rows = {key: row for key, row in zip(keys, features, strict=True)}

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, images: Tensor, names: list[str] | None = None) -> Tensor:
        """Features of a batch of images (B, 3, S, S) in [-1, 1], as float32 on the images' device."""
        found = []
        for position, image in enumerate(images.detach().float().cpu()):  # one read-back for the batch
            row = self.rows.get(image_key(image))
            if row is None:
                which = names[position] if names else f"image {position} of a batch"
                raise LowdimError(f"{self.path}: no features for {which}; compute them from the same images "
                                  f"(`lowdim encoder-features`)")
            found.append(row)
        return torch.stack(found).to(images.device, torch.float32)
