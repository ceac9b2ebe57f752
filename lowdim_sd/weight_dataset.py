"""Reading `lowdim precompute` folders: the (image, θ) pairs the hypernetwork trains on.

Several folders read as one data set when they were made alike (same model, space, layers and
training recipe), so a data set can grow by precomputing new identities into a new folder.
"""

from __future__ import annotations

import copy
import glob
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

import lowdim
from lowdim.errors import LowdimError
from lowdim.option_words import Wording, counted, either
from lowdim.spaces.base import Space
from lowdim_sd import stopping
from lowdim_sd.checked_pictures import CheckedPictures, file_state
from lowdim_sd.crop_cache import CropCache
from lowdim_sd.face_inputs import load_face_image
from lowdim_sd.faces import DEFAULT_MARGIN
from lowdim_sd.image_names import IMAGE_EXTENSIONS
from lowdim_sd.weight_index import differing_settings, read_index
from lowdim_sd.weight_readers import ReaderMark
from lowdim_sd.weight_shards import check_weight_folder, nonfinite_line

Folders = str | Path | Sequence[str | Path]
DEFAULT_CROP_CACHE_BYTES = 2 << 30  # 2 GiB: about 2,700 crops at 512 px
_CropCache = CropCache  # the name it had here, which tests reach for
IMAGE_ROOT = Wording("--image-root", "image_root")  # where the images are now, as its reader passes it


def as_folders(folders: Folders) -> list[Path]:
    """One folder or several, as a list of paths."""
    if isinstance(folders, (str, Path)):
        return [Path(folders)]
    return [Path(folder) for folder in folders]


class WeightDataset(torch.utils.data.Dataset):
    """(image, θ) pairs of one or more weight folders: ``dataset[i]`` is ``(image (3, S, S) in [-1, 1],
    {layer: {param}})``.

    The image is the identity's first reference image at the folders' resolution (``all_images``: one
    item per image, each with its identity's weights). Shards are read lazily, row by row. With several
    folders, identity names are ``FOLDER_NAME/NAME``, so equal names in two folders stay apart.
    """

    def __init__(self, folders: Folders, *, image_root: Path | None = None, all_images: bool = False,
                 names: list[str] | None = None, crop_cache_bytes: int = DEFAULT_CROP_CACHE_BYTES) -> None:
        self.folders = as_folders(folders)
        if not self.folders:
            raise LowdimError("no weight folder given")
        # Marked before the indexes are read: a precompute into a folder then keeps every shard they may name.
        self._reader_marks = [ReaderMark(_weight_folder(folder)) for folder in self.folders]
        self._indexes = [read_index(folder) for folder in self.folders]
        _check_alike(self.folders, self._indexes)
        self.index = self._indexes[0]
        if image_root is not None and len(self.folders) > 1:
            raise LowdimError(f"{either('--image-root (image_root)', 'image_root')} applies to one weight folder "
                              f"only")
        self.roots = [Path(image_root or index["root"]) for index in self._indexes]
        self._all_entries = _named_entries(self.folders, self._indexes)
        if image_root is not None:  # an older lowdim's absolute paths are found under it by their bytes
            self._all_entries = [_found_by_bytes(entry, Path(image_root)) for entry in self._all_entries]
        # Every shard's header against its index (no tensor read): a damaged folder is one line now, before any
        # model loads, not a traceback or a wrong pairing minutes into training.
        self.layers = [check_weight_folder(folder, index) for folder, index in
                       zip(self.folders, self._indexes, strict=True)][0]
        self.resolution = int(self.index["resolution"])
        # The hypernetwork must see the images the way precompute trained on them: cropped alike
        # (the folders agree on it: the crop is part of the recipe _check_alike compares).
        config = self.index.get("config", {})
        self.crop = bool(config.get("crop", False))
        # An index from before the margin was recorded was cropped with precompute's default margin, not none.
        margin = config.get("crop_margin")
        self.crop_margin = float(DEFAULT_MARGIN if margin is None else margin)
        self.face_index = config.get("face_index")
        # Shared by every subset (a shallow copy), so the training subsets know what the start check saw.
        self._checked = CheckedPictures()
        self._select(names, all_images, crop_cache_bytes)

    def subset(self, names: list[str], *, all_images: bool = False) -> WeightDataset:
        """The named identities of the same folders (train/validation splits), without reading the indexes again."""
        other = copy.copy(self)
        other._select(names, all_images, self._crops.max_bytes)
        return other

    def _select(self, names: list[str] | None, all_images: bool, crop_cache_bytes: int) -> None:
        entries = self._all_entries
        if names is not None:
            by_name = {entry["name"]: entry for entry in entries}
            missing = [name for name in names if name not in by_name]
            if missing:
                shown = ", ".join(str(folder) for folder in self.folders)
                raise LowdimError(f"{shown}: no identity named {', '.join(missing[:3])}")
            entries = [by_name[name] for name in names]
        self.entries = entries
        self.names = [entry["name"] for entry in entries]
        self.items = [(number, image) for number, entry in enumerate(entries)
                      for image in (entry["images"] if all_images else entry["images"][:1])]
        # Cropping runs a face detector, far slower than decoding the file, and train-hypernet reads
        # every image each epoch: so a cropped image is kept as uint8 (resolution² × 3 bytes: 0.75 MiB
        # at 512) up to a memory budget, least recently used out first. DataLoader workers each fill
        # their own cache.
        self._crops = _CropCache(crop_cache_bytes)

    @property
    def checked(self) -> CheckedPictures:
        """What this run saw of each picture at its start (shared by every subset): --extra-images are held to it
        too, so a picture checked twice at the start is read once."""
        return self._checked

    @property
    def crops(self) -> CropCache:
        """This data set's crops, within its ``crop_cache_bytes``: --extra-images read alike are kept in it too."""
        return self._crops

    @property
    def space(self) -> Space:
        return lowdim.get_space(self.index["space"], self.index["space_config"])

    def __len__(self) -> int:
        return len(self.items)

    def identity(self, item: int) -> int:
        """Position (in ``names``) of the identity of item ``item``."""
        return self.items[item][0]

    def weights(self, number: int) -> dict[str, dict[str, Tensor]]:
        from safetensors import safe_open

        entry = self.entries[number]
        nested: dict[str, dict[str, Tensor]] = {}
        path = self.folders[entry["folder"]] / entry["shard"]
        try:
            with safe_open(str(path), framework="pt") as shard:
                for key in shard.keys():  # noqa: SIM118 (safe_open is not a dict)
                    layer, _, param = key.rpartition("/")
                    nested.setdefault(layer, {})[param] = _finite(shard.get_slice(key)[entry["row"]],
                                                                  (path, key, entry["row"]), entry["name"])
        except LowdimError:
            raise
        except Exception as error:  # OSError, or safetensors' own error type
            # A signal's KeyboardInterrupt raised inside safetensors' reading comes out as its error (torch's
            # "could not determine the shape of object type ..."): that is the stop, not a damaged shard.
            stopping.check()
            # Gone, whatever error type said so (FileNotFoundError, or safetensors' own when the file vanished
            # between its checks); today's precompute leaves a live reader's shards alone.
            if isinstance(error, FileNotFoundError) or not path.exists():
                folder = path.parent
                raise LowdimError(f"{path}: removed since this run read {folder}'s index (by hand, or by a "
                                  f"lowdim precompute into {folder} that did not see this run); rerun lowdim "
                                  f"precompute into {folder} to make it whole, then start this run again") from None
            raise LowdimError(f"{path}: unreadable weight shard ({error})") from None
        return nested

    def image_path(self, item: int) -> Path:
        number, image = self.items[item]
        return self._path(self.entries[number], image)

    def people(self) -> dict[str, str]:
        """Each identity's person, by its first image's bytes (recorded by precompute; in older folders, by
        the image's resolved path): two weight folders made from the same identities, or from copies of
        them, hold each person twice, and a held-out copy must not have its twin in training."""
        return {entry["name"]: entry.get("digest") or str(self._path(entry, entry["images"][0]).resolve())
                for entry in self._all_entries}

    def _path(self, entry: dict, image: str) -> Path:
        path = Path(image)
        return path if path.is_absolute() else self.roots[entry["folder"]] / path

    def check_images(self) -> None:
        """Every image is still there: one stat each, so a moved or deleted photo stops a run before its first
        step, not hours into it."""
        missing = [item for item in range(len(self)) if not self.image_path(item).is_file()]
        if missing:
            number = self.entries[self.items[missing[0]][0]]["folder"]
            # Where precompute read them, a rerun of it takes identities whose pictures were deleted out.
            removed = (f"; if they were removed on purpose, rerun the lowdim precompute that made "
                       f"{self.folders[number]} (it takes identities with no pictures left out of the folder)"
                       if self.roots[number] == Path(self._indexes[number]["root"]) else "")
            number, image = self.items[missing[0]]
            are = "is" if len(missing) == 1 else "are"
            raise LowdimError(f"{len(missing)} of the {counted(len(self), 'training image')} {are} gone, e.g. "
                              f"{self.image_path(missing[0])}; {self._where_to_find(self.entries[number], image)}"
                              f"{removed}")
        self.check_same_pictures()

    def _where_to_find(self, entry: dict, image: str) -> str:
        """What brings a missing picture back: an absolute path (an older lowdim's, for a picture linked from
        outside its root) is not read under ``--image-root``, which finds it only by its recorded bytes."""
        if not Path(image).is_absolute():
            return f"restore them there, or pass {IMAGE_ROOT} with the folder they moved to"
        looked = self.roots[entry["folder"]] / entry["name"]
        if self.roots[entry["folder"]] != Path(self._indexes[entry["folder"]]["root"]):
            return (f"the index names it by absolute path (an older lowdim's), and no picture with the bytes it "
                    f"recorded is in {looked}: pass as {IMAGE_ROOT} a folder holding each identity's pictures "
                    f"(NAME/ or NAME.png, as precompute read them)")
        return (f"the index names them by absolute path (an older lowdim's): restore them there, or pass as "
                f"{IMAGE_ROOT} a folder holding each identity's pictures (NAME/ or NAME.png, found there by their "
                f"bytes)")

    def check_same_pictures(self) -> None:
        """Each identity's images have the bytes precompute trained its weights on (every image's where it
        recorded them, else the first's): another folder under the same names, or pictures replaced since,
        would pair weights with other faces and train the network on noise without a word."""
        from lowdim_sd.weight_index import image_digest, recorded_digests

        def first_changed(entry: dict) -> Path | None:  # a later image may be gone: check_images reads the first
            for image, digest in zip(entry["images"], recorded_digests(entry), strict=False):
                path = self._path(entry, image)
                seen = file_state(path)  # before the digest: a change while it is read shows as one later
                if seen is None or image_digest(path) != digest:
                    return path
                self._checked.record(path, seen, digest)
            return None

        changed = [path for entry in self.entries if (path := first_changed(entry)) is not None]
        if changed:
            number = self.entries[0]["folder"]
            folder, weights = self.roots[number], self.folders[number]
            # Where precompute read them, a rerun of it trains the changed identities again (it compares every
            # image); elsewhere (--image-root), only the folder it read has the right pictures.
            where = (f"if they changed since, rerun the lowdim precompute that made {weights} (it trains changed "
                     f"identities again); if the folder it read moved, pass that folder (or a copy of it) as "
                     f"{IMAGE_ROOT}" if folder == Path(self._indexes[number]["root"]) else
                     f"pass the folder precompute read (or a copy of it) as {IMAGE_ROOT}")
            raise LowdimError(f"{len(changed)} of the {len(self.entries)} identities' pictures in {folder} are not "
                              f"those their weights were trained on, e.g. {changed[0]}; {where}")

    def image(self, item: int) -> Tensor:
        path = self.image_path(item)
        if not self.crop:
            face = load_face_image(path, self.resolution, crop=False)
            self._check_unchanged(item, path)
            return face
        # A crop kept is of the picture the start check saw.
        return self._crops.crop(path, lambda: self._cropped_and_checked(item, path))

    def _cropped_and_checked(self, item: int, path: Path) -> Tensor:
        face = load_face_image(path, self.resolution, True, self.crop_margin, self.face_index)
        self._check_unchanged(item, path)
        return face

    def _check_unchanged(self, item: int, path: Path) -> None:
        """After a read from disk (a change before or during it shows then; one after it left these pixels right):
        a picture replaced since ``check_same_pictures`` saw it would pair new pixels with the old weights."""
        if self._checked.unchanged(path):
            return
        folder = self.folders[self.entries[self.items[item][0]]["folder"]]
        raise LowdimError(f"{path}: changed since this run checked it against {folder}'s index (its weights were "
                          f"trained on the picture it was then); put that picture back to continue, or rerun the "
                          f"lowdim precompute that made {folder} and start a new run")

    def __getitem__(self, item: int) -> tuple[Tensor, dict[str, dict[str, Tensor]]]:
        return self.image(item), self.weights(self.items[item][0])


def _weight_folder(path: Path) -> Path:
    """``path`` if it is a folder; else one line saying what it is instead (missing, or the index itself)."""
    if path.is_dir():
        return path
    if path.is_file() and (path.name == "index.json" or path.name.startswith("index-p")):
        raise LowdimError(f"{path}: a weight folder's index; pass its folder: -w {path.parent}")
    what = "a file, not a weight folder" if path.exists() else "no such folder"
    raise LowdimError(f"{path}: {what} (a `lowdim precompute` output folder)")


def _check_alike(folders: list[Path], indexes: list[dict]) -> None:
    """θ from another model, space, layer list or recipe would teach the hypernetwork two targets: refused naming
    each precompute option that differs with both folders' values (``--seed (0 in w1, 1 in w2)``), as a precompute
    rerun names them."""
    for folder, index in zip(folders[1:], indexes[1:], strict=True):
        if differing_settings(indexes[0], index):
            shown = "; ".join(_worded_apart(indexes[0], index, str(folders[0]), str(folder)))
            raise LowdimError(f"{folder}: made with other settings than {folders[0]}: {shown}; only weight folders "
                              f"made alike can train one hypernetwork")


def _worded_apart(first: dict, other: dict, first_name: str, other_name: str) -> list[str]:
    """Precompute's own lines for what differs (``precompute_differences``: its flags, both values, one line for a
    setting two fields record), each side said by its folder (``in w1``) rather than ``there``/``now``."""
    from lowdim_sd.precompute_header import Sides, precompute_differences

    sides = Sides(f"in {first_name}", f"in {other_name}", "between the two precomputes",
                  f"in {first_name} than in {other_name}")
    different = differing_settings(first, other)
    fields = [key for key, there, now in different  # the adapter seed is config.seed too: one setting, said once
              if not (key.startswith("config.") and (key.removeprefix("config."), there, now) in different)]
    lines = list(dict.fromkeys(line for key in fields for line in precompute_differences(key, first, other, sides)))
    return lines or fields


def _named_entries(folders: list[Path], indexes: list[dict]) -> list[dict]:
    """Every identity entry, sorted by name, with its folder's position and (for several) a qualified name."""
    qualify = len(folders) > 1
    if qualify and len({folder.resolve().name for folder in folders}) < len(folders):
        raise LowdimError(f"weight folders need distinct names to keep their identities apart: "
                          f"{', '.join(str(folder) for folder in folders)}")
    entries = []
    for position, (folder, index) in enumerate(zip(folders, indexes, strict=True)):
        for entry in index["identities"]:
            name = f"{folder.resolve().name}/{entry['name']}" if qualify else entry["name"]
            entries.append({**entry, "name": name, "folder": position})
    # Sorted by name, not by folder order: an identity's number seeds its noise, so `-w a -w b` and
    # `-w b -w a` must be the same run.
    return sorted(entries, key=lambda entry: entry["name"])


def _found_by_bytes(entry: dict, root: Path) -> dict:
    """``entry`` with each absolute image path (an older lowdim's, for a picture linked from outside its root)
    replaced by the picture under ``root`` (its identity's sub-folder, or its flat image) with the bytes the index
    recorded for it: the copy of linked identities (``cp -rL``) a moved data set leaves. Not found: kept as it is."""
    from lowdim_sd.weight_index import image_digest, recorded_digests

    digests = recorded_digests(entry)
    absolute = [number for number, image in enumerate(entry["images"]) if Path(image).is_absolute()
                and number < len(digests)]
    if not absolute:
        return entry
    place = root / entry["name"]
    pictures = (sorted(path for path in place.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS)
                if place.is_dir() else [path for path in place.parent.glob(f"{glob.escape(place.name)}.*")
                                        if path.suffix.lower() in IMAGE_EXTENSIONS])
    by_bytes = {image_digest(path): str(path.relative_to(root)) for path in reversed(pictures) if path.is_file()}
    images = list(entry["images"])
    for number in absolute:
        images[number] = by_bytes.get(digests[number], images[number])
    return {**entry, "images": images}


def _finite(values: Tensor, where: tuple[Path, str, int], name: str) -> Tensor:
    """``values`` if finite: NaN or Inf in a target would end training as a NaN loss, blamed on the learning rate.
    ``where``: (shard, tensor, row) of identity ``name``. A rerun of precompute into the same folder trains such a row
    again (``precompute_resume.forget_nonfinite``), as train-hypernet's own check of every row says."""
    if values.is_floating_point() and not torch.isfinite(values).all():
        folder = where[0].parent
        raise LowdimError(f"{nonfinite_line(name, where)}; refusing it (rerun the lowdim precompute that made {folder} "
                          f"into it: it trains such identities again)")
    return values
