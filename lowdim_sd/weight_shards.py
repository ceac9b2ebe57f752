"""A weight folder checked against its own index before anything trains on it or counts it as done.

An index and its shards may come from a stranger, or be edited by hand: a shard of another shape, a stray or
missing tensor, a row another identity's, an index naming shards that never existed. Each would otherwise surface
as a traceback minutes into training, or train on the wrong θ without a word. So each shard the index names is
opened once and its header alone is read (safetensors' JSON header: names, dtypes, shapes and the shard's own list
of identities; no tensor), and compared with what the index's space and layers make. Each refusal is one line
naming index.json or the shard. Values are read apart, by ``nonfinite_rows``: a row of NaN or Inf (a diverged
identity, a damaged copy) is trained again by a precompute resume, and refused by train-hypernet and precompute
--init before they write or load anything.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.filecheck import checked_layers, printable_name
from lowdim.paths import is_plain_name
from lowdim.spaces.base import LayerSpec
from lowdim_sd.weight_index import INDEX

FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # as safetensors names them
MAX_RESOLUTION = 8192  # a side lowdim trains at: SD1.5 512, SDXL 1024; a bigger one is an edited index


def check_weight_folder(folder: Path, index: dict, images: bool = True) -> list[LayerSpec]:
    """Refuse, in one line, an index or shard of ``folder`` that cannot be trained on; the index's layers.
    ``images``: also refuse image paths that climb out of the index's root with ``..`` (train-hypernet and show; a
    precompute rerun records them anew)."""
    where = Path(folder) / INDEX
    layers = checked_layers(index.get("layers"), where, LowdimError)
    check_resolution(where, index.get("resolution"))
    for entry in index["identities"]:
        check_shard_name(Path(folder), entry)
        if images:
            check_images(where, entry)
    expected = _expected_shapes(where, index, layers)
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for entry in index["identities"]:
        by_shard[entry["shard"]].append(entry)
    dtypes: dict[str, str] = {}  # dtype: the first shard holding it
    for shard, entries in sorted(by_shard.items()):
        dtype = _check_shard(Path(folder), shard, entries, expected)
        dtypes.setdefault(dtype, shard)
    if len(dtypes) > 1:  # one recipe, one precision: a shard of another is another folder's
        (first, one), (second, other) = list(dtypes.items())[:2]
        raise LowdimError(f"{folder}: {one} holds {first} values and {other} {second}; one weight folder's shards "
                          f"share one dtype")
    return layers


def check_shard_name(folder: Path, entry: dict) -> None:
    """A shard is a plain file of its own folder: an index must not point lowdim at files elsewhere."""
    shard = entry.get("shard")
    if not is_plain_name(shard) or not shard.endswith(".safetensors"):
        raise LowdimError(f"{folder}: identity {entry.get('name')!r} names shard {shard!r}; a shard must be a "
                          f"plain .safetensors file name inside the weight folder")


def check_resolution(where: Path, resolution: object) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 8 <= resolution <= MAX_RESOLUTION \
            or resolution % 8:
        raise LowdimError(f"{where}: resolution {resolution!r} is not a side lowdim trains at (a multiple of 8 from 8 "
                          f"to {MAX_RESOLUTION}); the index is damaged")


def check_images(where: Path, entry: dict) -> None:
    """An identity's images are paths inside the index's root, or absolute paths. A relative path is read under
    the root (or ``--image-root``), so one that climbs out with ``..`` is no path any lowdim wrote: an edited or a
    stranger's index reaching past the folder the user named, refused before anything is opened. An absolute path
    is what every lowdim before 1ef893c recorded for a picture that resolves outside the root (a folder of links into
    a data set): a folder made so must still train, and the file it names is one the user can read anyway."""
    images = entry.get("images")
    name = printable_name(str(entry.get("name")))
    if not isinstance(images, list) or not images:
        raise LowdimError(f"{where}: identity {name} names no images; the index is damaged")
    for image in images:
        if not isinstance(image, str) or not image_path_allowed(image):
            raise LowdimError(f"{where}: identity {name} names image {printable_name(str(image))}; an index names its "
                              f"images by their path inside its root, with no '..', or by an absolute path (the "
                              f"index is damaged: rerun the lowdim precompute that made the folder, which records "
                              f"them so)")


def image_path_allowed(image: str) -> bool:
    """Whether an index may name ``image``: a path below its root or an absolute one, with no ``..`` part."""
    if not image or "\x00" in image:
        return False
    return all(".." not in kind(image).parts for kind in (PurePosixPath, PureWindowsPath))


def image_inside_root(image: str) -> bool:
    """Whether ``image`` is a plain relative path below a root (no drive, no leading slash, no ``..`` part)."""
    if not image_path_allowed(image):
        return False
    return not any(kind(image).is_absolute() or kind(image).anchor for kind in (PurePosixPath, PureWindowsPath))


def _expected_shapes(where: Path, index: dict, layers: list[LayerSpec]) -> dict[str, tuple[int, ...]]:
    """Each stored tensor's name ('layer/param') and per-row shape, as the index's space makes them."""
    import lowdim

    try:
        space = lowdim.get_space(str(index.get("space")), index.get("space_config"))
    except LowdimError as error:
        raise LowdimError(f"{where}: its space cannot be made ({error})") from None
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise LowdimError(f"{where}: its space {index.get('space')!r} and space_config cannot be read "
                          f"({type(error).__name__}: {error})") from None
    return {f"{layer.name}/{param}": tuple(shape) for layer in layers
            for param, shape in space.param_shapes(layer).items()}


def _check_shard(folder: Path, shard: str, entries: list[dict], expected: dict[str, tuple[int, ...]]) -> str:
    """One shard's header against the index: its tensors, their shared row count and dtype, and each entry's row
    (an int below that count, named so in the shard's own list of identities). Its dtype."""
    path = folder / shard
    if path.is_symlink():
        raise LowdimError(f"{path}: a symbolic link; a weight folder's shards are its own files, not links to others")
    if not path.exists():
        who = ", ".join(printable_name(entry["name"]) for entry in entries[:2])
        raise LowdimError(f"{folder / INDEX} names {shard} (identity {who}), which is missing from {folder}; rerun "
                          f"the lowdim precompute that made the folder to train those identities again")
    if not path.is_file():
        raise LowdimError(f"{path}: not a regular file; a weight folder's shards are plain .safetensors files")
    shapes, dtypes, names = _header(path)
    unexpected = sorted(set(shapes) - set(expected))
    if unexpected:
        raise LowdimError(f"{path}: unexpected tensor {printable_name(unexpected[0])} (the index's space and layers "
                          f"make no such tensor)")
    missing = sorted(set(expected) - set(shapes))
    if missing:
        raise LowdimError(f"{path}: missing tensor {printable_name(missing[0])}, which the index's space and layers "
                          f"make")
    rows = shapes[next(iter(shapes))][0] if shapes and shapes[next(iter(shapes))] else 0
    for key, shape in shapes.items():
        if dtypes[key] not in FLOAT_DTYPES:
            raise LowdimError(f"{path}: tensor {printable_name(key)} holds {dtypes[key]} values, not floats")
        if tuple(shape) != (rows, *expected[key]):
            raise LowdimError(f"{path}: tensor {printable_name(key)} has shape {tuple(shape)}; the index's space and "
                              f"layers need {(rows, *expected[key])}")
    counts = Counter(dtypes.values()).most_common()
    if len(counts) > 1:  # the odd one out named, against what most tensors hold
        odd = next(key for key, dtype in dtypes.items() if dtype != counts[0][0])
        raise LowdimError(f"{path}: tensor {printable_name(odd)} is {dtypes[odd]}, the others {counts[0][0]}; a "
                          f"shard's tensors share one dtype")
    for entry in entries:
        _check_row(folder, path, entry, rows, names)
    return counts[0][0] if counts else "F32"


def _check_row(folder: Path, path: Path, entry: dict, rows: int, names: list[str] | None) -> None:
    row, name = int(entry["row"]), entry["name"]  # an int from 0: read_index checked it
    if row >= rows:
        raise LowdimError(f"{folder / INDEX} names row {row} of {path} (identity {printable_name(name)}), which holds "
                          f"{rows} rows; the index is damaged")
    if names is not None and names[row] != name:
        raise LowdimError(f"{path}: row {row} is {printable_name(names[row])} in the shard's own list, but "
                          f"{INDEX} names it {printable_name(name)}; the index pairs an identity with another's "
                          f"weights")


def _header(path: Path) -> tuple[dict[str, list[int]], dict[str, str], list[str] | None]:
    """(shapes, dtypes, the shard's own list of identities) from ``path``'s header; no tensor is read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as opened:
            slices = {key: opened.get_slice(key) for key in opened.keys()}  # noqa: SIM118 (not a dict)
            shapes = {key: list(part.get_shape()) for key, part in slices.items()}
            dtypes = {key: str(part.get_dtype()) for key, part in slices.items()}
            metadata = opened.metadata() or {}
    except Exception as error:  # OSError, or safetensors' own error type for every way a file is broken
        raise LowdimError(f"{path}: unreadable weight shard ({str(error).splitlines()[0] if str(error) else error!r})"
                          ) from None
    if "identities" not in metadata:
        return shapes, dtypes, None
    try:
        names = json_text.loads(metadata["identities"])
    except ValueError:
        names = None
    rows = shapes[next(iter(shapes))][0] if shapes and shapes[next(iter(shapes))] else 0
    if not isinstance(names, list) or len(names) != rows or not all(isinstance(name, str) for name in names):
        raise LowdimError(f"{path}: its metadata's list of identities is not one name per row; the shard is damaged")
    return shapes, dtypes, names


def nonfinite_rows(folder: Path, entries: Iterable[dict]) -> dict[str, tuple[Path, str, int]]:
    """Of ``entries`` (index entries of ``folder`` that ``check_weight_folder`` passed), those whose row holds NaN
    or Inf: name -> (shard, tensor, row), its first such tensor. Each shard is read once, a tensor at a time (a
    batch of identities' rows, ~26K values each at SD1.5); rows no entry names are not looked at."""
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for entry in entries:
        by_shard[entry["shard"]].append(entry)
    found: dict[str, tuple[Path, str, int]] = {}
    for shard, named in sorted(by_shard.items()):
        path = Path(folder) / shard
        rows = [int(entry["row"]) for entry in named]
        for key, finite in _finite_rows(path, rows):
            for entry, row, whole in zip(named, rows, finite, strict=True):
                if not whole:
                    found.setdefault(entry["name"], (path, key, row))
    return found


def _finite_rows(path: Path, rows: list[int]) -> Iterable[tuple[str, list[bool]]]:
    """(tensor name, whether each of ``rows`` is finite in it) for each float tensor of the shard at ``path``."""
    import torch
    from safetensors import safe_open

    from lowdim_sd import stopping

    try:
        with safe_open(str(path), framework="pt") as opened:
            for key in opened.keys():  # noqa: SIM118 (safe_open is not a dict)
                picked = opened.get_tensor(key)[rows]
                if picked.is_floating_point() and picked[0].numel():
                    yield key, torch.isfinite(picked).reshape(len(rows), -1).all(1).tolist()
    except Exception as error:  # OSError, or safetensors' own error type for every way a file is broken
        stopping.check()  # a Ctrl-C inside safetensors' read comes out as its error: the stop, not a damaged shard
        raise LowdimError(f"{path}: unreadable weight shard ({str(error).splitlines()[0] if str(error) else error!r})"
                          ) from None


def nonfinite_line(name: str, where: tuple[Path, str, int]) -> str:
    """What ``nonfinite_rows`` found of identity ``name``: its shard, tensor and row."""
    path, key, row = where
    return (f"{path}: tensor {printable_name(key)} holds NaN or Inf values in row {row} (identity "
            f"{printable_name(name)})")


def refuse_nonfinite(folder: Path, entries: Iterable[dict]) -> None:
    """One line for the first of ``entries`` whose row holds NaN or Inf: trained on, it ends the run in a NaN loss
    blamed on the learning rate. A precompute resume into the folder trains such identities again."""
    found = nonfinite_rows(folder, entries)
    if found:
        name, where = next(iter(found.items()))
        raise LowdimError(f"{nonfinite_line(name, where)}; refusing it (rerun the lowdim precompute that made "
                          f"{folder} into it: it trains such identities again)")
