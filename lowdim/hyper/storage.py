"""Hypernetwork files: safetensors weights + JSON metadata (no pickle), checked on load.

A hypernetwork only makes sense for the (base model, space, layer set, layers, encoder) it was
trained for, so all of them are recorded, and a load against another target lists every field
that differs instead of failing on the first.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from torch import Tensor, nn

from lowdim import __version__, json_text
from lowdim.bases_record import CHECKSUM
from lowdim.errors import ConfigError, LowdimError
from lowdim.file_fit import config_problem, format_version_problem
from lowdim.filecheck import MAX_INFLATED, check_regeneration, check_savable_names, checked_layers, printable_name
from lowdim.files import atomic_save, read_checked
from lowdim.hyper.bases_seed import PROBED_LAYERS, bases_checksum, bases_record, recorded_seed
from lowdim.hyper.config import HyperConfig, encoder_config_name, normalize_encoder_config
from lowdim.hyper.encoder import comparable, is_packaged
from lowdim.hyper.head import HyperHead
from lowdim.hyper.safety import check_fit, check_offline, checked_build
from lowdim.option_words import either
from lowdim.paths import expand_user
from lowdim.spaces.base import LayerSpec, Space

if TYPE_CHECKING:
    from lowdim.registry import Registry

FORMAT = "lowdim.hypernet"
FORMAT_VERSION = "1"
BACKBONE = "encoder.backbone."
DEFAULT_ENCODER = HyperConfig().encoder  # a label only, where a config was given instead


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def save_hypernet(path: str | os.PathLike, net: nn.Module, metadata: Mapping[str, Any] | None = None, *,
                  adapter_seed: int | None = None) -> Path:
    """Write ``net`` atomically. ``metadata``: 'model' and 'layer_set' are recorded as such, the rest as extra.

    ``adapter_seed``: the ``seed`` the predicted adapters are injected with, which makes a space's frozen bases.
    It is recorded with the checksum of those bases, so ``load_hypernet`` refuses the file where they come out
    otherwise. It may come as metadata's 'adapter_seed' instead (with or without its 'bases_checksum', kept as
    given), as lowdim_sd's training records it; a space with frozen bases saved without it warns.
    """
    head = cast(HyperHead, net)  # any registered head has HyperHead's attributes, whether or not it subclasses it
    check_savable_names(head.layers, f"{path}: the hypernetwork's")
    metadata = dict(metadata or {})
    metadata.update(bases_record(path, head, metadata, adapter_seed))
    # Any registered head can be saved if it has .config, .space, .layers (and optionally .encoder).
    encoder = getattr(net, "encoder", None)
    tensors = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    if not getattr(encoder, "stored_in_file", True):  # a frozen packaged encoder: rebuilt from its package
        tensors = {k: v for k, v in tensors.items() if not k.startswith(BACKBONE)}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lowdim_version": __version__,
        "hyper_config": _dumps(head.config.to_dict()),
        "space": head.space.name,
        "space_config": _dumps(head.space.config.to_dict()),
        "layers": _dumps([[layer.name, layer.out_features, layer.in_features] for layer in head.layers]),
        "encoder": _encoder_record(encoder, getattr(head.config, "encoder_config", None)),
        "encoder_config": _dumps(getattr(encoder, "config_dict", {})),
        "encoder_weights": "file" if getattr(encoder, "stored_in_file", True) else "package",
        "model": str(metadata.pop("model", "")),
        "layer_set": str(metadata.pop("layer_set", "")),
        "extra": _dumps(metadata),
    }
    return atomic_save(tensors, header, Path(path))


# What the header's "encoder" says of a backbone built randomly from a config given without a name of its own.
INLINE_CONFIG = "inline config"


def _encoder_record(encoder: Any, config: Any = None) -> str:
    """The header's ``encoder``: the hub id or package whose weights the backbone has; for one built randomly from
    a config (``config``, as the network's HyperConfig holds it), the label its caller gave (HyperConfig.encoder
    is a label then), else the name the config was given by (``named_encoder_config``: train-hypernet's
    ``--encoder-config tiny``), else "inline config"; never the default hub id, whose weights it does not hold
    (what ``lowdim show`` says of it too)."""
    hub_id = str(getattr(encoder, "hub_id", ""))
    if not getattr(encoder, "from_config", False) or is_packaged(hub_id):  # a packaged one ignores the config
        return hub_id
    if hub_id not in ("", DEFAULT_ENCODER):
        return hub_id
    return encoder_config_name(config) or INLINE_CONFIG


@dataclass(frozen=True)
class HypernetFile:
    """A hypernetwork file read once: its tensors and its checked header (``read_hypernet``).

    What a caller needs before deciding to build the network (what it was made for, the seed of the
    weights it learned from, a digest that tells checkpoints apart) is here, so nothing else parses
    the header, and ``load_hypernet`` builds from it without opening the file again.
    """

    path: Path
    header: Mapping[str, str]  # the file's metadata strings, as stored
    stored: Mapping[str, Any]  # the same, parsed and checked
    tensors: Mapping[str, Tensor]

    @property
    def made_for(self) -> tuple[str, dict, str]:
        """(space name, space config, layer set name) the hypernetwork predicts."""
        return self.stored["space"], self.stored["space_config"], self.stored["layer_set"]

    @property
    def metadata(self) -> dict[str, Any]:
        """What a built network's ``.metadata`` holds: model, layer set and the training run's extras."""
        return {"model": self.stored["model"], "layer_set": self.stored["layer_set"], **self.stored["extra"]}

    @property
    def digest(self) -> str:
        """16 hex digits of sha256 over the header alone (config, layers, step and the training run's record:
        from train-hypernet, its --lr, --seed, --batch-size and run id, a digest of every option and each weight
        folder's pictures): it tells checkpoints and runs apart without hashing the weights. Not the file's sha256
        (``sha256sum`` gives another); personalize records it as the recipe's hypernet ``digest``."""
        return hashlib.sha256(json.dumps(dict(self.header), sort_keys=True).encode()).hexdigest()[:16]


def _check_bases(read: HypernetFile, space: Space) -> None:
    extra = read.stored["extra"]
    # Files from before it was recorded (the seed alone), and a caller's own record without a seed (save warned).
    if "bases_checksum" not in extra or "adapter_seed" not in extra:
        return
    seed, recorded = recorded_seed(extra, read.path), extra["bases_checksum"]
    probed = read.stored["layers"][:PROBED_LAYERS]
    check_regeneration(space, probed, read.path)  # a 2 KB header may claim bases that take minutes to make
    made = bases_checksum(space, probed, seed)
    if made is None and not recorded:  # a space without bases (LoRA) records null
        return
    if not recorded:  # every lowdim records the checksum with the seed for a space that makes bases
        raise LowdimError(f"{read.path}: its extra records adapter_seed {seed} but no bases_checksum "
                          f"({json.dumps(recorded)}), though its space '{space.name}' makes frozen bases from the "
                          f"seed, and every lowdim records their checksum with it: the metadata was edited, so the "
                          f"bases the hypernetwork learned with cannot be checked; use the file as it was saved, or "
                          f"train it again")
    if not isinstance(recorded, str) or not CHECKSUM.fullmatch(recorded):
        shown = printable_name(recorded if isinstance(recorded, str) else json.dumps(recorded), 60)
        raise LowdimError(f"{read.path}: its bases_checksum {shown} is not 16 lowercase hex digits; the file is "
                          f"damaged (use it as it was saved)")
    if made != recorded:
        raise LowdimError(f"{read.path}: the frozen {space.name} bases this machine makes for seed {seed} differ "
                          f"from those the hypernetwork learned with (checksum mismatch), so its predictions would "
                          f"mean other weights here: its adapter_seed, layers or space config was edited, or (an "
                          f"unedited file) this platform or lowdim version makes other bases; then train it again "
                          f"here")


def read_hypernet(path: str | os.PathLike) -> HypernetFile:
    """Read a hypernetwork file once: tensors and header, checked; a broken file is one LowdimError."""
    path = Path(path)
    tensors, header = read_checked(path, FORMAT, "hypernetwork", LowdimError)
    # Every hypernetwork file has recorded "1" since the first one, so an absent version is refused as well.
    if problem := format_version_problem(header, "hypernetwork", FORMAT_VERSION):
        raise LowdimError(f"{path}: {problem}")
    return HypernetFile(path, header, checked_header(header, path), tensors)


def load_hypernet(
    path: str | os.PathLike | HypernetFile,
    *,
    model: str | None = None,
    space: Space | None = None,
    layer_set: str | None = None,
    layers: Sequence[LayerSpec] | None = None,
    encoder: Any = None,
    registry: Registry | None = None,
) -> HyperHead:
    """Rebuild the stored hypernetwork (offline: the encoder is rebuilt from its stored config).

    Each given expectation (base model id, space, layer set name, layer list, encoder hub id or
    config) is compared with the file; all differences are listed in one LowdimError. ``path`` may be
    a file already read by ``read_hypernet``.
    """
    from lowdim.hyper.network import build_hypernet
    from lowdim.registry import get_registry

    read = path if isinstance(path, HypernetFile) else read_hypernet(path)
    path, tensors, header, stored = read.path, dict(read.tensors), read.header, read.stored
    differences = target_differences(stored, model=model, space=space, layer_set=layer_set, layers=layers,
                                     encoder=encoder)
    if differences:
        raise LowdimError(f"{path} does not fit the requested target: {'; '.join(differences)}")
    registry = registry or get_registry()
    stored_space = _stored_space(stored, path, registry)
    _check_bases(read, stored_space)
    config = _stored_config(stored, path)
    package = header.get("encoder_weights") == "package"
    check_offline(config.encoder, normalize_encoder_config(config.encoder_config),
                  header.get("encoder_weights", "file"), encoder, path)
    net = checked_build(functools.partial(build_hypernet, registry=registry), config, stored_space, stored["layers"],
                        tensors, package, path)
    head = cast(HyperHead, net)  # build_hypernet's result
    head.load_state_dict(tensors, strict=not package)
    head.metadata = read.metadata
    return head.eval()  # ready to predict, as personalize does (dropout off); .train() to go on training


def _stored_space(stored: Mapping[str, Any], path: Path, registry: Registry) -> Space:
    """The space a checked header (``checked_header``) records, or one ConfigError naming the file."""
    try:
        return registry.make_space(stored["space"], stored["space_config"])
    except ConfigError as error:  # an option a newer lowdim or plugin added, or a space not installed here
        raise ConfigError(f"{path}: {config_problem(error)}") from None


def _stored_config(stored: Mapping[str, Any], path: Path) -> HyperConfig:
    """The network's config a checked header records, or one ConfigError naming the file."""
    # The backbone's own config, so the encoder is rebuilt offline; its weights come from the file.
    encoder_config = stored["encoder_config"] or stored["hyper_config"].get("encoder_config")
    try:
        return HyperConfig.from_dict({**stored["hyper_config"], "encoder_config": encoder_config})
    except ConfigError as error:
        raise ConfigError(f"{path}: {config_problem(error, plugins=False)}") from None


def check_stored_tensors(header: Mapping[str, str], tensors: Mapping[str, Tensor], path: Path,
                         registry: Registry | None = None) -> None:
    """``load_hypernet``'s checks of a file's tensors, names, shapes and dtypes, against the network its header
    builds, in its words (a LowdimError naming the file), without their values: ``tensors`` may be meta tensors of
    a header's shapes and dtypes (``lowdim show``, which reads no tensor). The bases' checksum is not checked. A
    file naming its encoder by its hub id alone is not built, as that goes to the hub (a load does where its caller
    names that encoder)."""
    from lowdim.hyper.network import build_hypernet
    from lowdim.registry import get_registry

    registry = registry or get_registry()
    stored = checked_header(header, path)
    space, config = _stored_space(stored, path, registry), _stored_config(stored, path)
    encoder_config, weights = normalize_encoder_config(config.encoder_config), header.get("encoder_weights", "file")
    if encoder_config is None and not is_packaged(config.encoder) and weights != "package":
        return
    check_offline(config.encoder, encoder_config, weights, None, path)
    check_fit(functools.partial(build_hypernet, registry=registry), config, space, stored["layers"], tensors,
              weights == "package", path, values=False)


# JSON objects in every file lowdim writes; encoder_config may also be null (an encoder named by its hub id alone).
CONFIG_FIELDS = ("hyper_config", "space_config", "encoder_config", "extra")


def _field(header: Mapping[str, str], field: str, path: Path, default: str | None = None) -> Any:
    """Metadata ``field`` parsed as JSON (a config: a JSON object), or one line naming the file and the field."""
    text = (header.get(field) or default) if default is not None else header[field]
    try:
        value = json_text.loads(text)
    except ValueError as error:
        raise LowdimError(f"{path}: the metadata field '{field}' is corrupted ({error})") from None
    if field in CONFIG_FIELDS and not isinstance(value, dict) and not (field == "encoder_config" and value is None):
        raise LowdimError(f"{path}: the '{field}' in the metadata is not a JSON object; the file was edited or is "
                          f"damaged")
    return value


def checked_header(header: Mapping[str, str], path: Path) -> dict[str, Any]:
    """A hypernetwork file's metadata strings parsed and checked (configs are JSON objects, layers within bounds), or
    one LowdimError naming the file and the field (``lowdim show`` shows it as the file's problem)."""
    if len(header.get("layers") or "") > MAX_INFLATED:  # an adapter's layer list has the same bound
        raise LowdimError(f"{path}: the layer list in the metadata is longer than {MAX_INFLATED >> 20} MB; refusing it")
    try:
        return {
            "hyper_config": _field(header, "hyper_config", path),
            "space": header["space"],
            "space_config": _field(header, "space_config", path),
            "layers": checked_layers(_field(header, "layers", path), path, LowdimError),
            "encoder": header["encoder"],
            "encoder_config": _field(header, "encoder_config", path),
            "model": header.get("model", ""),
            "layer_set": header.get("layer_set", ""),
            "extra": _field(header, "extra", path, default="{}"),
        }
    except KeyError as error:
        raise LowdimError(f"{path}: incomplete hypernetwork metadata (no {error})") from None


def target_differences(stored: Mapping[str, Any], **expected: Any) -> list[str]:
    """One line per expectation that the file does not meet."""
    found = []
    if expected["model"] is not None and not same_model(expected["model"], stored["model"]):
        found.append(f"model: file {stored['model']!r}, expected {expected['model']!r}")
    space = expected["space"]
    if space is not None and (space.name, space.config.to_dict()) != (stored["space"], stored["space_config"]):
        found.append(
            f"space: file {stored['space']} {_dumps(stored['space_config'])}, "
            f"expected {space.name} {_dumps(space.config.to_dict())} "
            f"(the file predicts {space_flags(stored['space'], stored['space_config'])})"
        )
    if expected["layer_set"] is not None and expected["layer_set"] != stored["layer_set"]:
        predicts = either(f"--layers {stored['layer_set']}", f"layer_set={stored['layer_set']!r}")
        found.append(f"layer_set: file {stored['layer_set']!r}, expected {expected['layer_set']!r} (the file predicts "
                     f"{predicts})")
    if expected["layers"] is not None:
        found.extend(_layer_differences(stored["layers"], list(expected["layers"])))
    if expected["encoder"] is not None:
        found.extend(_encoder_differences(stored, expected["encoder"]))
    return found


def space_flags(name: str, config: Mapping[str, Any]) -> str:
    """``--space NAME --set KEY=VALUE ...`` that builds space ``name`` with ``config``: the options that differ
    from the space's defaults (every one, when this install cannot make its defaults)."""
    from lowdim.registry import get_registry

    try:
        defaults = get_registry().space_class(name).config_class.from_dict({}, name).to_dict()
    except (LowdimError, TypeError, ValueError):  # not registered here, or no defaults: name every option
        defaults = {}
    options = [f" --set {shlex.quote(f'{key}={_set_value(value)}')}" for key, value in config.items()
               if key not in defaults or defaults[key] != value]
    return f"--space {shlex.quote(name)}" + "".join(options)


def _set_value(value: Any) -> str:
    """As --set reads it back (JSON where it parses, else the plain string)."""
    if isinstance(value, str):
        try:
            json_text.loads(value)
        except ValueError:
            return value  # a plain word: --set keeps it as the string
    return json.dumps(value)


def same_model(expected: str, stored: str) -> bool:
    """Equal names, or two spellings of one local folder (files made before paths were recorded absolute)."""
    if expected == stored:
        return True
    here, there = expand_user(expected), expand_user(stored)
    return here.exists() and there.exists() and here.resolve() == there.resolve()


def _layer_differences(stored: list[LayerSpec], expected: list[LayerSpec]) -> list[str]:
    if stored == expected:
        return []
    by_name = {layer.name: layer for layer in stored}
    wanted = {layer.name: layer for layer in expected}
    missing = [name for name in wanted if name not in by_name]
    extra = [name for name in by_name if name not in wanted]
    reshaped = [
        f"{name} (file {by_name[name].out_features}x{by_name[name].in_features}, "
        f"expected {layer.out_features}x{layer.in_features})"
        for name, layer in wanted.items()
        if name in by_name and by_name[name] != layer
    ]
    parts = [f"{label} {_shown(items)}" for label, items in
             (("missing from file:", missing), ("not expected:", extra), ("shape differs:", reshaped)) if items]
    return [f"layers: {'; '.join(parts) or 'same layers in another order'}"]


def _encoder_differences(stored: Mapping[str, Any], expected: Any) -> list[str]:
    if isinstance(expected, str):
        if expected == stored["encoder"]:
            return []
        return [f"encoder: file {stored['encoder']!r}, expected {expected!r}"]
    have, want = comparable(stored["encoder_config"]), comparable(normalize_encoder_config(expected))
    keys = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if not keys:
        return []
    return ["encoder config: " + _shown([f"{k} (file {have.get(k)!r}, expected {want.get(k)!r})" for k in keys])]


def _shown(items: list[str], limit: int = 5) -> str:
    more = f", and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
