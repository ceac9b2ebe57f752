"""Make a retrained TinyFaces model and the hypernetwork made on it the package's defaults.

    python -m lowdim_tinyfaces.ship runs/r14/tfv2/model runs/r15/tf2/hyper/hypernet.safetensors

A network made with ``-m tinyfaces-retrained`` records that model name, and ``personalize --model
tinyfaces`` refuses a network made for another model. Once the retrained folder *is* the shipped
model, the name is the only thing that changes, so the network is rewritten with ``model`` set to
``tinyfaces`` and every tensor unchanged; a network made for any other model is refused. The new
folder is copied beside the old one and swapped in by renames, and an interrupted swap puts the old
model back.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.files import atomic_save, read_checked
from lowdim.hyper.storage import FORMAT

from .model_files import hypernet_path, model_path, not_a_model_folder

SHIPPED_NAME = "tinyfaces"
RETRAINED_NAME = "tinyfaces-retrained"  # what LOWDIM_TINYFACES_RETRAINED registers (plugin.py)


def ship(model_folder: Path, hypernet: Path, model_dir: Path | None = None, hypernet_file: Path | None = None) -> None:
    """Copy ``model_folder`` to the package's model folder and ``hypernet`` (relabelled) beside it."""
    model_dir, hypernet_file = model_dir or model_path(), hypernet_file or hypernet_path()
    problem = not_a_model_folder(model_folder)
    if problem:
        raise LowdimError(problem)
    tensors, metadata = read_checked(hypernet, FORMAT, "hypernetwork", LowdimError)
    if metadata.get("model") not in (RETRAINED_NAME, SHIPPED_NAME):
        raise LowdimError(f"{hypernet}: made for model {metadata.get('model')!r}, not {RETRAINED_NAME!r}; "
                          f"only a network made on a TinyFaces model can ship with one")
    replace_folder(model_folder, model_dir)
    atomic_save(tensors, {**shareable(metadata), "model": SHIPPED_NAME}, hypernet_file)
    split, shipped_split = hypernet.parent / "split.json", hypernet_file.parent / "split.json"
    if split.is_file():  # which training identities the network saw (docs/results.md reads it)
        shutil.copyfile(split, shipped_split)
    else:
        shipped_split.unlink(missing_ok=True)  # the old network's split would describe the wrong one


def shareable(metadata: dict[str, str]) -> dict[str, str]:
    """The network's metadata without its maker's paths, which mean nothing on a user's machine: the folders
    it was trained from by name (as train-hypernet records them since), and no ``_name_or_path`` in the
    encoder's config. What the network computes is untouched."""
    extra = json_text.loads(metadata.get("extra") or "{}")
    for key in ("weights", "key_pairs", "extra_images"):
        if isinstance(extra.get(key), str):
            extra[key] = ", ".join(Path(folder.strip()).name for folder in extra[key].split(","))
    shared = {**metadata, **({"extra": json.dumps(extra, sort_keys=True, separators=(",", ":"))}
                             if "extra" in metadata else {})}
    encoder_config = json_text.loads(metadata.get("encoder_config") or "null")
    if isinstance(encoder_config, dict) and encoder_config.pop("_name_or_path", None) is not None:
        shared["encoder_config"] = json.dumps(encoder_config, sort_keys=True, separators=(",", ":"))
    return shared


def replace_folder(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source``: copied beside it first, then swapped in by renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    retired = target.with_name(f".{target.name}.old")
    shutil.rmtree(retired, ignore_errors=True)  # left by an interrupted earlier swap
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        forget_where_it_was_loaded_from(staging)
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
    except BaseException:
        if retired.exists() and not target.exists():
            os.replace(retired, target)  # the old model back where it was
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def forget_where_it_was_loaded_from(folder: Path) -> None:
    """Drop ``_name_or_path`` from every component config: a path on the training machine means nothing
    to a user's, and diffusers writes it when a component was loaded from a folder before being saved."""
    for config_file in folder.glob("*/config.json"):
        config = json_text.loads(config_file.read_text())
        if config.pop("_name_or_path", None) is not None:
            config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_folder", type=Path, help="exported TinyFaces folder (train_model's --model-dir)")
    parser.add_argument("hypernet", type=Path, help="hypernetwork made on that model (train-hypernet's output)")
    args = parser.parse_args(argv)
    try:
        ship(args.model_folder, args.hypernet)
    except LowdimError as problem:
        parser.exit(2, f"error: {problem}\n")
    print(f"shipped {args.model_folder} as {model_path()} and {args.hypernet} as {hypernet_path()}")


if __name__ == "__main__":
    main()
