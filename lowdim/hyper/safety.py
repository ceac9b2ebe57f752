"""Building a hypernetwork from a file without trusting the file.

The header's configs decide the architecture, hence how much is allocated; the encoder's decides
whether transformers goes to the hub. So before anything real is built: every size is within a
sane bound, the encoder can be rebuilt offline (or the caller named its hub id on purpose), and the
architecture, built on the meta device (no memory), has exactly the tensors the file holds, every
one of them finite floats. A hostile or broken file gets one line naming the tensor or setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lowdim.errors import LowdimError, first_line
from lowdim.filecheck import DEPTH_KEY, FLOATS, check_sizes, printable_name
from lowdim.hyper.config import HyperConfig
from lowdim.hyper.encoder import is_packaged
from lowdim.spaces.base import LayerSpec, Space

# Config switches that make transformers fetch other weights (timm or hub backbones) while building.
FETCHING_KEYS = ("use_pretrained_backbone", "use_timm_backbone")
BACKBONE = "encoder.backbone."
# How a file is refused whose configs build no network (``lowdim show`` words its problem row alike).
CANNOT_BUILD = "its network cannot be built from the configs it records"
# Keys of a transformers config whose integers are sizes (hidden_size, num_attention_heads, num_channels, embed_dim,
# hidden_sizes): below 1, torch and transformers fail on them with their own errors. A depth (num_hidden_layers,
# depths) may be 0. Any other integer may be a sentinel (-1: none), and a float (mlp_ratio: 0.5) no size: the build
# judges them.
SIZE_KEY = re.compile(r"(size|dim|heads|channels)s?$")


def check_offline(encoder: str, encoder_config: dict | None, weights: str, requested: Any, path: Path) -> None:
    """The encoder is rebuilt from the file or a package, unless the caller asked for this hub id by name."""
    if weights == "package" and not is_packaged(encoder):
        raise LowdimError(f"{path}: says its encoder '{encoder}' comes from a package, but no package provides it "
                          f"(the file lacks the encoder's weights)")
    if is_packaged(encoder):
        return
    if encoder_config is None:
        if isinstance(requested, str) and requested == encoder:
            return  # the caller named this hub id: downloading it is what they asked for
        raise LowdimError(f"{path}: stores no encoder_config for its image encoder '{encoder}', so rebuilding it "
                          f"would go to the hub; pass encoder='{encoder}' to allow that, or re-save it with the "
                          f"encoder's config")
    for key in FETCHING_KEYS:
        if _any_true(encoder_config, key):
            raise LowdimError(f"{path}: its encoder_config sets '{key}', which downloads weights while building; "
                              f"lowdim rebuilds file encoders offline only")


def _any_true(config: Any, key: str) -> bool:
    if isinstance(config, Mapping):
        return bool(config.get(key)) or any(_any_true(v, key) for v in config.values())
    return False


def checked_build(build: Any, config: HyperConfig, space: Space, layers: list[LayerSpec],
                  tensors: Mapping[str, Tensor], package: bool, path: Path) -> nn.Module:
    """``build(config, space, layers)``, after the meta-device twin proved it fits ``tensors`` exactly."""
    check_fit(build, config, space, layers, tensors, package, path)
    return built(build, config, space, layers, path)


def built(build: Any, config: HyperConfig, space: Space, layers: list[LayerSpec], path: Path) -> nn.Module:
    """``build(config, space, layers)``; what it raises on the file's configs (transformers', torch's or a plugin
    head's own refusal of a stranger's values) is one LowdimError naming the file. Memory running out is no fault of
    the file, and stays what it is."""
    try:
        return build(config, space, layers)
    except (MemoryError, torch.OutOfMemoryError):
        raise
    except LowdimError as error:  # a refusal of its own (an unknown head or model_type): said of this file
        if not str(error).startswith(f"{path}: "):
            error.args = (f"{path}: {error}",)
        raise
    except Exception as error:
        raise LowdimError(f"{path}: {CANNOT_BUILD} ({type(error).__name__}: {first_line(error)})") from error


def size_floor_problem(config: Any, field: str, key: str) -> str | None:
    """Where a (nested) transformers config ``config``, stored in the file's ``field``, holds a size below 1 or a
    depth below 0 (None: it holds none). Only the config and its sub-configs (``vision_config``) are looked at:
    a mapping such as ``label2id`` holds names of any kind, not sizes."""
    if not isinstance(config, Mapping):
        return None
    for name, value in config.items():
        where = f"{key}.{name}" if key else str(name)
        if isinstance(value, Mapping):
            if str(name).endswith("_config") and (problem := size_floor_problem(value, field, where)):
                return problem
            continue
        what, least = ("depth", 0) if DEPTH_KEY.search(str(name)) else ("size", 1)
        if what == "size" and not SIZE_KEY.search(str(name)):
            continue
        for number in value if isinstance(value, list) else [value]:
            if isinstance(number, int) and not isinstance(number, bool) and number < least:
                return f"{field} {printable_name(where)} is {number}; a {what} must be at least {least}"
    return None


def check_fit(build: Any, config: HyperConfig, space: Space, layers: list[LayerSpec], tensors: Mapping[str, Tensor],
              package: bool, path: Path, values: bool = True) -> None:
    """That ``build(config, space, layers)``, built on the meta device (no memory), has exactly ``tensors``
    (``check_tensors``; ``values``: their values too). ``lowdim show`` checks a file's meta tensors with it."""
    check_sizes(config.to_dict(), path, "hyper_config")
    if problem := size_floor_problem(config.encoder_config, "encoder_config", ""):
        raise LowdimError(f"{path}: {CANNOT_BUILD} ({problem})")
    with torch.device("meta"):
        twin = built(build, config, space, layers, path)
    expected = {k: v for k, v in twin.state_dict().items() if not (package and k.startswith(BACKBONE))}
    check_tensors(expected, tensors, path, values)


def check_tensors(expected: Mapping[str, Tensor], found: Mapping[str, Tensor], path: Path,
                  values: bool = True) -> None:
    """Same names, same shapes, floats where floats are expected, finite values; the first offence named. Without
    ``values`` the values are not looked at: meta tensors (a header's shapes and dtypes) have none."""
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise LowdimError(f"{path}: tensors do not fit the stored hypernetwork config (missing: "
                          f"{_shown(missing) or 'none'}; unexpected: {_shown(extra) or 'none'})")
    for key, want in expected.items():
        have = found[key]
        if have.shape != want.shape:
            raise LowdimError(f"{path}: tensor '{key}' is {have.dim()}-D {tuple(have.shape)}, where the stored config "
                              f"expects {want.dim()}-D {tuple(want.shape)}")
        if want.dtype in FLOATS and have.dtype not in FLOATS:
            raise LowdimError(f"{path}: tensor '{key}' holds {str(have.dtype).removeprefix('torch.')}, not floats")
        if values and have.dtype in FLOATS and not bool(torch.isfinite(have).all()):
            raise LowdimError(f"{path}: tensor '{key}' holds NaN or Inf values (a diverged run?); refusing it")


def _shown(items: list[str], limit: int = 5) -> str:
    more = f", and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
