"""Each installed space's frozen state drawn again in a fresh Python process, for the contract suite.

A file keeps only the seed of a space's frozen state, and the loader regenerates it. A ``make_buffers`` that
mixes in ``hash(layer.name)`` (salted per process), an ``id(...)`` or any other per-process value gives the
same tensors twice in one process, so every in-process check passes, and the adapter then fails to load back on
the very machine that saved it. One child process, with another ``PYTHONHASHSEED``, draws every space's buffers
on three small layers (a few seconds for the whole suite); each space's test compares its own.

Run as ``python -m lowdim.testing.fresh_process OUT.safetensors`` by ``make_buffers_elsewhere`` only.
"""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from lowdim import json_text
from lowdim.spaces.base import LayerSpec

# Three names: a salted hash folded into a few values (``hash(name) % 1000``) may agree on one of them by chance.
LAYERS = [LayerSpec(name, 6, 5) for name in ("blk.0.attn.q", "blk.3.mlp.fc2", "text.embed")]
SEED = 1234
Buffers = dict[str, Tensor]


def buffers_of(registry, space_name: str) -> Buffers:
    """The space's buffers on each of LAYERS ("layer:buffer" keys), in the config the suite draws for a fixed rng."""
    space_class, found = registry.space_class(space_name), {}
    for layer in LAYERS:
        space = registry.make_space(space_name, space_class.sample_config(random.Random(0), layer))
        found.update({f"{layer.name}:{key}": value for key, value in space.make_buffers(layer, SEED).items()})
    return found


def _other_hash_seed() -> str:
    # Unset or "random" here means a random salt in this process: any fixed one differs from it.
    own = os.environ.get("PYTHONHASHSEED", "")
    return str((int(own) + 1) % 2**32) if own.isdigit() else "1"


@functools.cache
def make_buffers_elsewhere() -> tuple[dict[str, Buffers | str], str, str | None]:
    """space name -> its buffers from a child process (or the error it raised there), the child's hash seed,
    and why the child gave nothing at all (None when it ran)."""
    hash_seed = _other_hash_seed()
    paths = os.pathsep.join(path for path in sys.path if path)  # the child sees the plugins this process sees
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": paths}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "buffers.safetensors"
        done = subprocess.run([sys.executable, "-m", "lowdim.testing.fresh_process", str(out)], env=env,
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            return {}, hash_seed, f"the child process failed ({tail})"
        with safe_open(out, "pt") as file:
            metadata = file.metadata()
        tensors = load_file(out)
    found: dict[str, Buffers | str] = dict(json_text.loads(metadata["errors"]))
    for name in json_text.loads(metadata["spaces"]):
        found[name] = {key.split("/", 1)[1]: value for key, value in tensors.items() if key.split("/", 1)[0] == name}
    return found, hash_seed, None


def fresh_process_problem(space_name: str) -> str | None:
    """What differs between this process's buffers of the space and a fresh process's, in one line, or None."""
    from lowdim.testing.contract_cases import REGISTRY  # the suite's registry; the child builds its own

    elsewhere, hash_seed, failure = make_buffers_elsewhere()
    there = elsewhere.get(space_name, failure or "the space is not registered there")
    if isinstance(there, str):
        return f"space '{space_name}': make_buffers could not be checked in a fresh Python process: {there}"
    here = {key: value.contiguous() for key, value in buffers_of(REGISTRY, space_name).items()}
    differ = sorted(key for key in set(here) | set(there)
                    if key not in here or key not in there or not torch.equal(here[key], there[key]))
    if not differ:
        return None
    return (f"space '{space_name}': make_buffers gave other tensors for the same seed in a fresh Python process "
            f"(PYTHONHASHSEED={hash_seed}) than in this one ({', '.join(differ)}); draw frozen state from "
            f"torch.Generator().manual_seed(seed) alone, never from hash(), id() or anything else that changes "
            f"from process to process, or a saved adapter cannot be loaded back")


def _draw_every_space(out: Path) -> None:
    import lowdim

    with warnings.catch_warnings():  # a plugin's load warnings are the suite's load check's to report
        warnings.simplefilter("ignore")
        registry = lowdim.Registry.from_plugins(load_entry_points=True)
    tensors: dict[str, Tensor] = {}
    spaces, errors = [], {}
    for name in sorted(registry.spaces):
        try:
            buffers = buffers_of(registry, name)
        except Exception as error:  # noqa: BLE001  (reported per space, by that space's test)
            errors[name] = f"{type(error).__name__}: {error}"
            continue
        spaces.append(name)
        tensors.update({f"{name}/{key}": value.detach().clone().contiguous() for key, value in buffers.items()})
    save_file(tensors, out, metadata={"spaces": json.dumps(spaces), "errors": json.dumps(errors)})


if __name__ == "__main__":
    _draw_every_space(Path(sys.argv[1]))
