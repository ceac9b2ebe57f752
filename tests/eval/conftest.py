"""Fixtures for lowdim eval: real face photos fetched from PyPI packages, and tiny random CLIP / DINO models.

No third-party photo is committed: the face_recognition sdist's test images (five photos of one
person, one of another) are downloaded with pip into pytest's cache on first use, and
scikit-image's astronaut ships inside scikit-image. Without the registry those tests skip.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

FACE_RECOGNITION_SDIST = "face_recognition==1.3.0"
# Files in the sdist's tests/test_images/: who is in each.
PHOTOS = {"obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama",
          "obama_partial_face2.jpg": "obama", "biden.jpg": "biden"}
CLIP_WORDS = ["a", "photo", "of", "face", "at", "night", "pencil", "sketch", "dog", "sks"]


def _download_sdist(folder: Path) -> Path:
    found = sorted(folder.glob("face_recognition-1.3.0.tar.gz"))
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
               "--disable-pip-version-check", "-d", str(folder), FACE_RECOGNITION_SDIST]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip download {FACE_RECOGNITION_SDIST} timed out (no package registry?)")
    found = sorted(folder.glob("face_recognition-1.3.0.tar.gz"))
    if done.returncode != 0 or not found:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"could not pip download {FACE_RECOGNITION_SDIST} for its test photos: {last}")
    return found[0]


def _run_folder(tmp_path_factory) -> Path:
    """A folder of this run that every pytest-xdist worker of it shares."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def face_photos(request, tmp_path_factory) -> dict[str, Image.Image]:
    """{file name: RGB photo} from the face_recognition sdist (cached under .pytest_cache)."""
    from filelock import FileLock  # huggingface_hub's dependency, so there wherever the sd extra is

    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider: download once a run
    folder = Path(cache.mkdir("lowdim-face-photos") if cache else _run_folder(tmp_path_factory) / "face-photos")
    folder.mkdir(exist_ok=True)
    with FileLock(str(folder / "download.lock")):  # one download for all workers, none reading a half-written one
        sdist = _download_sdist(folder)
    photos = {}
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            name = Path(member.name).name
            if "/tests/test_images/" in member.name and name in PHOTOS:
                data = archive.extractfile(member).read()
                photo = Image.open(io.BytesIO(data)).convert("RGB")
                photo.thumbnail((800, 800))  # faces stay over 150 px; detection on 2-core CI stays fast
                photos[name] = photo
    missing = set(PHOTOS) - set(photos)
    assert not missing, f"{sdist.name} no longer holds {sorted(missing)}"
    return photos


@pytest.fixture(scope="session")
def photo_people() -> dict[str, str]:
    """{file name: who is in it} for the face_photos."""
    return dict(PHOTOS)


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    data = pytest.importorskip("skimage.data")
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A random CLIP (model, image processor, tokenizer) saved as a local folder, loaded by path."""
    from tiny_metric_models import save_tiny_clip  # tests/, on the path as pytest puts it

    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip", CLIP_WORDS, side=32, seed=0)


@pytest.fixture(scope="session")
def tiny_dino(tmp_path_factory) -> Path:
    """A random ViT saved without an image processor: the metric falls back to ImageNet preprocessing."""
    from tiny_metric_models import save_tiny_vit  # tests/, on the path as pytest puts it

    return save_tiny_vit(tmp_path_factory.mktemp("dino") / "tiny-dino", side=32, seed=0)


@pytest.fixture
def noise():
    """noise(seed, size=48): a random RGB picture, a stand-in for a generated image with no face."""
    import numpy as np

    def make(seed: int, size: int = 48) -> Image.Image:
        pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
        return Image.fromarray(pixels)

    return make
