"""A weight folder's index (``index.json``, and the per-process ``index-p*.json`` parts): what every row of
the shards is, and the settings a precompute that extends the folder must share."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.file_fit import format_version_problem
from lowdim.filecheck import CONTROL, MAX_NAME, format_character_problem, printable_name
from lowdim.files import atomic_write
from lowdim.option_words import either
from lowdim_sd.face_inputs import crop_settings
from lowdim_sd.faces import DEFAULT_MARGIN
from lowdim_sd.resume_words import listed

FORMAT = "lowdim.weights"
FORMAT_VERSION = "1"
INDEX = "index.json"
# Header fields that must agree between a resumed run and the folder it extends.
IDENTITY_FIELDS = ("model", "space", "space_config", "seed", "layer_set", "layers", "resolution", "config")
# Training options older indexes recorded that do not change θ (bit-identical with and without): never compared,
# so a resume may add them, as the out-of-memory hint suggests.
NOT_SETTINGS = ("gradient_checkpointing",)
# How a setting's value reads in an error, where the index leaves the default out (None) or a bool hides the flag.
SHOWN: dict[str, dict[bool | str | None, str]] = {
    "config.shared_noise": {None: "off", False: "off", True: "on"}, "config.optimizer": {None: "'adamw'"},
    "config.augment": {True: "on", False: "off"}, "config.crop": {True: "on", False: "off"}}


def write_json(path: Path, payload: dict) -> None:
    atomic_write(path, lambda temp: Path(temp).write_text(json.dumps(payload, indent=1)))


def read_json(path: Path) -> dict:
    try:
        text = path.read_text()
    except (OSError, ValueError) as error:  # ValueError: not UTF-8
        raise LowdimError(f"{path}: unreadable weight index ({error})") from None
    try:
        return json_text.loads(text)
    except ValueError as error:  # JSON nested too deeply included
        refuse_a_long_version(path, text)
        raise LowdimError(f"{path}: unreadable weight index ({error})") from None


def refuse_a_long_version(path: Path, text: str) -> None:
    """An index whose format_version is a JSON number of more digits than int() takes (4,300), which json.loads
    fails on, refused as any other version this lowdim does not read (a larger one: upgrade), whatever else the
    index holds: a newer lowdim may write what this one cannot read. Read again with such numbers kept as text."""
    try:
        index = json_text.loads_keeping_long_numbers(text)
    except ValueError:
        return
    if isinstance(index, dict) and index.get("format") == FORMAT:
        check_version(path.parent, index)


def read_index(folder: Path) -> dict:
    """The merged index of a weight folder: ``index.json`` plus any per-process ``index-p*.json`` parts.

    Keys: format, model, space, space_config, seed, layer_set, layers ([name, out, in]), resolution,
    root (the identities folder), config (training options), dtype and init_path (where recorded),
    identities ([{name, shard, row, images, seed, digest, digests}]). An identity trained again (its pictures
    changed) appears once: its entry of the highest ``generation``.
    """
    folder = Path(folder)
    parts = [folder / INDEX] if (folder / INDEX).is_file() else []
    parts += sorted(folder.glob("index-p*.json"))
    if not parts:
        raise LowdimError(f"{folder}: not a weight dataset (no {INDEX}); create one with `lowdim precompute`")
    merged: dict = {}  # filled from the first part: never empty after it (it has "identities")
    newest: dict[str, dict] = {}
    for path in parts:
        index = read_json(path)
        if not isinstance(index, dict) or not isinstance(index.get("identities", []), list) \
                or not all(isinstance(entry, dict) for entry in index.get("identities", [])):
            raise LowdimError(f"{path}: not a lowdim weight index (a JSON object with a list of identities)")
        if index.get("format") != FORMAT:
            raise LowdimError(f"{path}: not a lowdim weight index (format {index.get('format')!r})")
        check_version(folder, index)
        if "identities" not in index:
            raise LowdimError(f"{path}: a weight index without its list of identities; it is damaged")
        if not merged:
            merged = {**index, "identities": []}
        elif differing_settings(merged, index):  # as a resume compares: an older index.json and a new part agree
            raise LowdimError(f"{path}: made with other settings than {parts[0].name}; they cannot be merged")
        for entry in index["identities"]:
            check_entry(path, entry)
            # A process can only add to its own part, so a retrained identity's new entry may sit beside the
            # old one in index.json: the generation (0 where absent) says which is current, whatever the order.
            earlier = newest.get(entry["name"])
            if earlier is None or generation(entry) > generation(earlier):
                newest[entry["name"]] = entry
            elif generation(entry) == generation(earlier) and _place(entry) != _place(earlier):
                # The same entry twice is a merge stopped before it removed a part; two rows under one name would
                # drop one identity's weights without a word, or pair a name with the wrong ones.
                raise LowdimError(f"{path}: identity {printable_name(entry['name'])} is listed twice "
                                  f"({_place(earlier)} and {_place(entry)}); the index is damaged")
    merged["identities"] = list(newest.values())
    return merged


def check_version(folder: Path, index: dict) -> None:
    """Refuse an index of another layout than this lowdim's in one line: a newer lowdim may have changed what its
    fields mean, and a resume would extend the folder in the old layout. Indexes from before the field are 1."""
    version = index.get("format_version", FORMAT_VERSION)
    if problem := format_version_problem({"format_version": str(version)}, "weight index", FORMAT_VERSION):
        raise LowdimError(f"{folder}: {problem}")


def generation(entry: dict) -> int:
    """How many times an identity's pictures changed and it was trained again (0: never)."""
    return int(entry.get("generation", 0))


# Joiners spell real names (Persian, Indic scripts, emoji) and print in place, unlike bidi overrides and zero-width
# spaces, which make a name print as another.
NAME_JOINERS = frozenset("\u200c\u200d")


def identity_name_problem(name: str) -> str | None:
    """Why ``name`` (a folder's or an image's name) cannot name an identity (None: it can): it is printed in progress
    lines and errors and keys the shards' rows, as precompute checks before training and every read of the index."""
    if not name or len(name) > MAX_NAME:
        return f"is empty or longer than {MAX_NAME} characters"
    if CONTROL.search(name):
        return "holds a control character or a line break"
    return format_character_problem(name, NAME_JOINERS)


def identity_named(path: Path, name: str | None = None) -> str:
    """The identity name a folder (or a flat image, named by ``name``) gives, refused before any training if an
    index could not hold it."""
    name = path.name if name is None else name
    if problem := identity_name_problem(name):
        raise LowdimError(f"{printable_name(str(path))}: an identity's name {problem}; rename it")
    return name


def check_entry(path: Path, entry: dict) -> None:
    """An identity entry's name, row and generation as precompute writes them: a name to print and key by (no
    control or invisible format character, as a layer name), a row that is an int from 0 (negative ones would read
    another identity's row from the end), a whole generation."""
    name = entry.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or CONTROL.search(name):
        raise LowdimError(f"{path}: an identity's name is {printable_name(str(name))}; a name is a line of printable "
                          f"text")
    if problem := identity_name_problem(name):
        raise LowdimError(f"{path}: identity {printable_name(name)}: its name {problem}; the index was edited")
    row, number = entry.get("row"), entry.get("generation", 0)
    if isinstance(row, bool) or not isinstance(row, int) or row < 0:
        raise LowdimError(f"{path}: identity {printable_name(name)} has row {row!r}; a row is a whole number from 0 "
                          f"(the index is damaged)")
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise LowdimError(f"{path}: identity {printable_name(name)} has generation {number!r}; the index is damaged")


def _place(entry: dict) -> str:
    return f"row {entry['row']} of {entry.get('shard')}"


def recorded_digests(entry: dict) -> list[str]:
    """The digests of an entry's images, in order: every image's, or, in indexes from before those were recorded,
    the first image's only (or none): pair them with ``entry["images"]`` by ``zip``."""
    if "digests" in entry:
        return list(entry["digests"])
    return [entry["digest"]] if "digest" in entry else []


def merge_index(folder: Path) -> Path:
    """Fold the per-process parts into ``index.json`` and remove them (the main process, at the end)."""
    folder = Path(folder)
    merged = read_index(folder)
    merged["identities"].sort(key=lambda entry: entry["name"])
    write_json(folder / INDEX, merged)
    for part in folder.glob("index-p*.json"):
        part.unlink(missing_ok=True)
    return folder / INDEX


def with_crop_defaults(config: dict) -> dict:
    """An index's training settings; indexes from before face cropping existed were made uncropped, and a cropped
    one from before its margin was recorded was cropped at precompute's default margin (as ``WeightDataset``
    reads it)."""
    settings = {**crop_settings(False, 0.0, None), **config}
    if settings["crop"] and settings["crop_margin"] is None:
        settings["crop_margin"] = DEFAULT_MARGIN
    return settings


# A differing setting in a command's own words (its flag): ``worded(field, index, header)``, the field as
# ``differing_settings`` names it (``config.learning_rate``), read from either side by ``recorded``.
Worded = Callable[[str, dict, dict], list[str]]


def done_identities(out: Path, header: dict, compared: dict | None = None,
                    worded: Worded | None = None) -> dict[str, dict]:
    """The identities ``out`` holds (name: entry), when made with ``header``'s settings from the same folder; else
    one line, naming each differing field (``config.learning_rate``) or, with ``worded``, as it words them (the
    command's flags). ``compared``: only those fields of the folder's index are compared (before the model loads,
    some are not known yet). Whether each one's pictures are still those is for the caller to tell."""
    if not (out / INDEX).is_file() and not any(out.glob("index-p*.json")):
        return {}
    existing = read_index(out)
    different = differing_settings(existing if compared is None else compared, header)
    # A header field the training config repeats (seed: the adapter seed is config.seed) is one setting, named once.
    different = [(key, there, now) for key, there, now in different
                 if not (key.startswith("config.") and (key.removeprefix("config."), there, now) in different)]
    if different:
        shown = listed(_difference_lines(different, existing, header, worded))  # all of them: one rerun fixes all
        raise LowdimError(f"{out} holds weights made with other settings: {shown}; rerun with those to continue, or "
                          f"use another {either('--out', 'out')} to start anew")
    if existing.get("dtype") and header.get("dtype") and existing["dtype"] != header["dtype"]:
        # Not a recipe setting (train-hypernet may read folders of both), but one folder's θ should be alike.
        dtype = either(f"--dtype {existing['dtype']}", f"dtype={existing['dtype']!r}")
        raise LowdimError(f"{out} holds weights trained in {existing['dtype']}, and this run would train in "
                          f"{header['dtype']}: pass {dtype} to continue them (on a device that trains in it), or use "
                          f"another {either('--out', 'out')} to start anew")
    if existing.get("root") and existing["root"] != header["root"] and not _moved_here(existing, header["root"]):
        # Names are matched per identity, so another folder's 'id-00001' would pass for this one's.
        together = either("another --out (train-hypernet -w A -w B reads several weight folders as one)",
                          "another out (HyperTrainJob(weights=[A, B]) reads several weight folders as one)")
        raise LowdimError(f"{out} holds weights of the identities in {existing['root']}, not {header['root']}: use "
                          f"{together}")
    from lowdim_sd.weight_shards import check_weight_folder

    # A shard that does not fit its index is no identity done: one line, not a rerun that skips it and a
    # train-hypernet that fails on it. Images are not checked: this run records them anew, healing an older index.
    check_weight_folder(out, existing, images=False)
    return {entry["name"]: entry for entry in existing["identities"]}


def _difference_lines(different: list[tuple[str, object, object]], existing: dict, header: dict,
                      worded: Worded | None) -> list[str]:
    if worded is None:
        return [f"{key} ({shown_setting(key, there, existing)} there, {shown_setting(key, now, header)} now)"
                for key, there, now in different]
    # One flag may say two fields (the seed), and a field may say nothing its cause's line does not (another
    # space's config): never an empty list, since the cause is a difference too, but the fields would do.
    lines = list(dict.fromkeys(line for key, _, _ in different for line in worded(key, existing, header)))
    return lines or [key for key, _, _ in different]


def recorded(index: dict, field: str) -> object:
    """A setting of an index (or a header) as ``differing_settings`` compares it: ``config.crop_margin`` from its
    training config, the crop's defaults filled in; a top-level field as it is."""
    if field.startswith("config."):
        return with_crop_defaults(index.get("config", {})).get(field.removeprefix("config."))
    return index.get(field)


def shown_init(value: object, index: dict) -> str:
    """An index's start: by the path it was given as, else by the start's digest; "no --init" without one. In the
    reader's words: ``--init PATH`` under the ``lowdim`` command, PrecomputeJob's field (``init='PATH'``) else."""
    path = (index.get("init_path") or {}).get("resolved")
    if value is None:
        return either("no --init", "no init")
    if path:
        return either(f"--init {path}", f"init={path!r}")
    return either(f"an --init of digest {value}", f"an init of digest {value}")


def shown_setting(key: str, value: object, index: dict) -> str:
    """A setting's value as the user would name it: the flag for a default left out, the --init file by path."""
    if key == "config.init":
        return shown_init(value, index)
    if key in SHOWN and isinstance(value, (bool, str, type(None))) and value in SHOWN[key]:
        return SHOWN[key][value]
    return repr(value)


def image_digest(path: Path) -> str:
    """Of an image file's bytes: what tells the same picture in a moved or copied folder from another one."""
    import hashlib

    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:20]


def _moved_here(index: dict, root: str) -> bool:
    """Whether the identities of ``index`` moved to ``root``: their old folder is gone and each identity's
    first image is found under the new one, at the same relative path, with the same bytes (indexes from
    before digests were recorded cannot show that, so their identities never count as moved)."""
    if Path(index["root"]).exists():
        return False
    from lowdim_sd.weight_shards import image_inside_root

    for entry in index["identities"]:
        images = entry.get("images")
        if not isinstance(images, list) or not images or not isinstance(images[0], str) \
                or not image_inside_root(images[0]):
            return False  # never opened: an index's image outside its root names no moved picture
        first = Path(root) / images[0]
        if "digest" not in entry or not first.is_file() or image_digest(first) != entry["digest"]:
            return False
    return True


def differing_settings(index: dict, other: dict) -> list[tuple[str, object, object]]:
    """(field, index's value, other's value) for each of ``IDENTITY_FIELDS`` that differs, training
    options named one by one (``config.steps``) rather than as two whole dicts."""
    configs = [{key: value for key, value in with_crop_defaults(settings.get("config", {})).items()
                if key not in NOT_SETTINGS} for settings in (index, other)]
    found = [(key, index.get(key), other.get(key)) for key in IDENTITY_FIELDS
             if key != "config" and index.get(key) != other.get(key)]
    keys = sorted(set(configs[0]) | set(configs[1]))
    return found + [(f"config.{key}", configs[0].get(key), configs[1].get(key)) for key in keys
                    if configs[0].get(key) != configs[1].get(key)]
