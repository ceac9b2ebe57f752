"""A metric's transformers model, checked as it loads: of the kind the metric needs, every weight read from its
files (none left at random), from safetensors only, and those files whole.

transformers loads a BERT or DINOv2 folder into a ViT with freshly random weights and only logs it (logs
lowdim silences), and names a cut-short file by safetensors' header error alone. A metric from random weights
is a wrong number that looks right, so each of these is refused (``UnusableModel``) in one line that
``hub.load_pretrained`` prefixes with the folder or id, and the metric is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lowdim.errors import first_line
from lowdim.metrics import MetricUnavailable
from lowdim_sd.eval.hub import UnusableModel


@dataclass(frozen=True)
class ModelKind:
    """What a metric's model must be: ``model_type`` as its config.json says it, and the sentence saying so."""

    what: str  # the model's name in messages: "DINO"
    model_type: str  # transformers' config.model_type: "vit"
    needs: str  # "the DINO metric needs a ViT (model_type 'vit'), e.g. facebook/dino-vits16"
    safetensors_hint: str = ""  # where the metric's default model keeps its safetensors, if not on main


def checked_loader(model_class: Any, kind: ModelKind, **options: Any) -> Callable[..., Any]:
    """A ``from_pretrained(source, **kwargs)`` for ``hub.load_pretrained``: ``model_class`` from safetensors only,
    raising UnusableModel unless the model is of ``kind`` and every weight came from its files."""

    def load(source: str, **kwargs: Any) -> Any:
        _check_model_type(source, kind, kwargs)  # first: a folder of another kind is never worth a download
        _refuse_pickles_only(source, kind)
        from safetensors import SafetensorError

        try:  # mismatched shapes are reported in the loading info below, not as transformers' "above report"
            net, info = model_class.from_pretrained(source, use_safetensors=True, output_loading_info=True,
                                                    ignore_mismatched_sizes=True, **options, **kwargs)
        except SafetensorError as error:
            raise UnusableModel(_damaged_file(source, error)) from None
        _check_every_weight_loaded(info, kind)
        return net

    return load


def _refuse_pickles_only(source: str, kind: ModelKind) -> None:
    folder = Path(source)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = sorted(folder.glob("pytorch_model*.bin"))
    if pickles:
        where = f" ({kind.safetensors_hint})" if kind.safetensors_hint else ""
        raise UnusableModel(f"{source} holds {pickles[0].name} only; lowdim loads weights from safetensors only "
                            f"(no pickle): download the model's safetensors{where} or convert it")


def _check_model_type(source: str, kind: ModelKind, kwargs: dict[str, Any]) -> None:
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(source, **kwargs)
    found = config.get("model_type")
    if found != kind.model_type:
        said = f"says model_type '{found}'" if found else "names no model_type"
        raise UnusableModel(f"its config.json {said}; {kind.needs}")


def _check_every_weight_loaded(info: dict[str, Any], kind: ModelKind) -> None:
    """Weights missing from the files, or of another shape than the config gives, would be random."""
    missing = sorted(info.get("missing_keys") or ())
    misfit = sorted(str(entry[0]) for entry in info.get("mismatched_keys") or ())
    for names, why in ((missing, "are not in its files"), (misfit, "have other shapes than its config.json gives")):
        if names:
            raise UnusableModel(f"{len(names)} of the {kind.what} model's weights {why} (e.g. {names[0]}), so they "
                                f"would be random; {kind.needs}")


def _damaged_file(source: str, error: Exception) -> str:
    """Which weights file safetensors could not read, from the folder or the Hugging Face cache."""
    from safetensors import SafetensorError, safe_open

    for file in _weight_files(source):
        try:
            with safe_open(str(file), "pt"):
                pass
        except SafetensorError as reason:
            return f"{file} is cut short or damaged ({first_line(reason)}); download it again"
    return f"a weights file of {source} is cut short or damaged ({first_line(error)}); download it again"


def _weight_files(source: str) -> list[Path]:
    folder = Path(source)
    if folder.is_dir():
        return sorted(folder.glob("*.safetensors"))
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "model.safetensors")
    return [Path(cached)] if isinstance(cached, str) else []


def needing_files(load: Callable[..., Any], part: str, *alternatives: str) -> Callable[..., Any]:
    """``load`` for a folder that holds one of ``alternatives`` (a processor's or tokenizer's files); a folder
    with none is told so, not given transformers' advice about the hub."""

    def checked(source: str, **kwargs: Any) -> Any:
        folder = Path(source)
        if folder.is_dir() and not any((folder / name).is_file() for name in alternatives):
            raise UnusableModel(f"it has no {' or '.join(alternatives)}: save the model's {part} beside it")
        return load(source, **kwargs)

    return checked


def check_picture_size(processor: Any, side: int, source: str, what: str) -> None:
    """The processor must make the pictures the model reads: another size would fail in the middle of scoring."""
    from PIL import Image

    pixels = processor(images=[Image.new("RGB", (side, side))], return_tensors="pt")["pixel_values"]
    height, width = (int(n) for n in pixels.shape[-2:])
    if (height, width) != (side, side):
        raise MetricUnavailable(f"the image processor in {source} makes {width}x{height} pictures but its {what} "
                                f"model reads {side}x{side}; fix or remove its preprocessor_config.json")
