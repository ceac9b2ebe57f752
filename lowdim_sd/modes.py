"""What trains in each mode. Every mode gives the engine a ``Trainable`` (see ``lowdim_sd.train``).

(a) full DreamBooth: the UNet (and optionally the text encoder) itself;
(b, c, any plugin space) an adapter of a registered space, one per subject;
(d) rank-relaxed fast finetuning: an initial adapter frozen (or merged) plus a new LoRA of rank r.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

import lowdim
from lowdim.errors import LowdimError
from lowdim.inject import LayerSet
from lowdim.spaces.base import Space
from lowdim_sd.embedding_undo import tokens_undone
from lowdim_sd.loading import SDModel
from lowdim_sd.registered_models import model_layer_set
from lowdim_sd.text_encoder_files import save_pipeline

ADAPTER = "subject"


def resolve_layers(name_or_patterns: str | None, model: str | None = None) -> LayerSet:
    """A layer set of ``model`` by name (its default when None) or comma-separated glob patterns: a registered
    model's own sets, the ones `lowdim inspect` counts; SD1.5's (default unet+text) for a path, a hub id or no
    model. ``lowdim_sd.registered_models.model_layer_set``, for the callers that have torch loaded."""
    return model_layer_set(name_or_patterns, model)


@contextlib.contextmanager
def left_as_given(model: SDModel, tokens: bool = False, initial: Path | None = None) -> Iterator[None]:
    """Hand a caller's model back as it came, however the run in the block ends (done, failed, Ctrl-C): else a
    second run, or the --resume a stop recommends, is refused on it ('subject' exists), and an adapter trained
    from Python would pile onto what the caller draws or merges next. The adapters the run added are deleted,
    unmerged first (rank relaxation merges the initial one into the base weights); with ``tokens`` (Textual
    Inversion appends [V]'s tokens and embedding rows) the tokenizer and the table are put back too. With
    ``initial`` (the adapter file rank relaxation merges) its layers' base weights are copied back bit for bit:
    unmerging subtracts what merging added, which rounds (1e-7 in fp32, 1e-4 in fp16)."""
    before = set(lowdim.Adapters(model.modules).names())
    weights = base_weights(model, initial) if initial is not None else {}
    with tokens_undone(model) if tokens else contextlib.nullcontext():  # after the adapters below are gone
        try:
            yield
        finally:
            adapters = lowdim.Adapters(model.modules)
            for name in reversed([name for name in adapters.names() if name not in before]):
                adapters.delete(name)
            with torch.no_grad():
                for layer, weight in weights.items():
                    _base_weight(model, layer).copy_(weight)


def base_weights(model: SDModel, adapter: Path) -> dict[str, Tensor]:
    """CPU copies of the weights of the layers ``adapter``'s file names (a few attention projections: small), as
    the model holds them now; a layer the model lacks is left to the load's own refusal."""
    copies = {}
    for layer in lowdim.read_adapter(adapter).layers:
        try:
            copies[layer.name] = _base_weight(model, layer.name).detach().to("cpu", copy=True)
        except AttributeError:
            continue
    return copies


def _base_weight(model: SDModel, layer: str) -> Tensor:
    """The layer's own weight Parameter, under an adapter the caller's model already carries too (a wrapper's
    ``weight`` is the effective one, computed)."""
    module = model.modules.get_submodule(layer)
    return getattr(module, "base_layer", module).weight


class AdapterTrainable:
    """An adapter (of any space) trained for one subject, or K subjects in one batch."""

    def __init__(self, model: SDModel, name: str, subject_names: list[str], metadata: dict[str, str],
                 save_dtype: str = "fp32") -> None:
        self.model = model
        self.save_dtype = save_dtype  # of the files ``save`` writes; checkpoints keep full precision
        self.adapters = lowdim.Adapters(model.modules)
        self.name = name
        self.subject_names = subject_names
        self.num_subjects = len(subject_names)
        self.metadata = metadata
        self.parameters = self.adapters.parameters(name)

    def state(self) -> dict[str, Tensor]:
        return {f"{layer}/{key}": value.detach().cpu()
                for layer, params in self.adapters.tensors(self.name).items() for key, value in params.items()}

    def load_state(self, tensors: dict[str, Tensor]) -> None:
        nested: dict[str, dict[str, Tensor]] = {}
        for key, value in tensors.items():
            layer, _, param = key.rpartition("/")
            nested.setdefault(layer, {})[param] = value
        self.adapters.load_tensors(self.name, nested)

    def signature(self) -> dict:
        """What a checkpoint of this adapter must match to resume: space, seed, layers, subjects, frozen part."""
        info = self.adapters.info(self.name)
        frozen = [p.detach().cpu().float().contiguous() for slot in self.adapters.slots(self.name).values()
                  for p in slot.params.values() if not p.requires_grad]
        digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in frozen)).hexdigest()[:16] if frozen else ""
        return {"space": info.space.name, "space_config": info.space.config.to_dict(), "seed": info.seed,
                "layer_set": info.layer_set, "layers": len(info.layers), "subjects": list(self.subject_names),
                "frozen_part": digest,
                **({"dropout": info.dropout} if info.dropout else {})}  # left out at 0: older checkpoints resume

    def save(self, out_dir: Path) -> list[Path]:
        batched = self.adapters.info(self.name).batch is not None
        return [
            lowdim.save_adapter(Path(out_dir) / f"{subject}.safetensors", self.adapters, self.name,
                                sample=index if batched else None, dtype=self.save_dtype, **self.metadata)
            for index, subject in enumerate(self.subject_names)
        ]


def adapter_trainable(model: SDModel, space: Space, layers: LayerSet, *, seed: int = 0,
                      subject_names: list[str] | None = None, token: str = "sks",
                      save_dtype: str = "fp32", dropout: float = 0.0) -> AdapterTrainable:
    """Inject a fresh adapter; with several subject names, one per-sample adapter each. ``dropout``: the
    adapter's input dropout while it trains (``Adapters.add``)."""
    if getattr(space, "learns_tokens", False):  # else it would write rows of the attention weights
        raise LowdimError(f"space '{space.name}' learns token vectors, not weight layers: train it with "
                          f"`lowdim train --space {space.name}`")
    names = subject_names or ["adapter"]
    batch = len(names) if len(names) > 1 else None
    lowdim.Adapters(model.modules).add(ADAPTER, space, layers, seed=seed, batch=batch, dropout=dropout)
    return AdapterTrainable(model, ADAPTER, names, {"base_model": model.base_model_id, "token": token},
                            save_dtype=save_dtype)


def relaxed_trainable(model: SDModel, initial: str, *, rank: int = 4, merge_frozen: bool = True,
                      seed: int | None = None, subject_name: str = "adapter", metadata: dict[str, str],
                      save_dtype: str = "fp32", dropout: float = 0.0) -> AdapterTrainable:
    """Paper §4.3, the one rank-relaxation path (personalize, ``train --init``, the bench rows): the model's
    adapter ``initial`` frozen (merged into the weights with ``merge_frozen``) plus a new LoRA of rank r.

    ``seed`` seeds the LoRA's init (default: the initial adapter's seed).
    """
    lowdim.relax_rank(lowdim.Adapters(model.modules), initial, ADAPTER, lowdim.get_space("lora", rank=rank),
                      merge_frozen=merge_frozen, seed=seed, dropout=dropout)
    return AdapterTrainable(model, ADAPTER, [subject_name], metadata, save_dtype=save_dtype)


def rank_relaxed_trainable(model: SDModel, initial: Path, *, rank: int = 4, merge_frozen: bool = True,
                           subject_name: str = "adapter", token: str | None = None,
                           save_dtype: str = "fp32", dropout: float = 0.0) -> AdapterTrainable:
    """Paper §4.3 from a file: load ``initial`` (e.g. a predicted LiDB), then ``relaxed_trainable``."""
    info = lowdim.load_adapter(initial, lowdim.Adapters(model.modules), name="initial")
    metadata = {"base_model": model.base_model_id, "token": token or info.metadata.get("token") or "sks"}
    return relaxed_trainable(model, "initial", rank=rank, merge_frozen=merge_frozen, subject_name=subject_name,
                             metadata=metadata, save_dtype=save_dtype, dropout=dropout)


class FullTrainable:
    """Full DreamBooth: every UNet weight (and the text encoder's, if asked) trains."""

    num_subjects = 1
    trains_model_weights = True  # AdamW then updates the model's own tensors, in the model's dtype

    def __init__(self, model: SDModel, train_text_encoder: bool = False) -> None:
        self.model = model
        self.parts = {"unet": model.pipe.unet}
        if train_text_encoder:
            self.parts["text_encoder"] = model.pipe.text_encoder
        self.parameters = []
        for part in self.parts.values():
            part.requires_grad_(True)
            self.parameters += [p for p in part.parameters()]

    def signature(self) -> dict:
        return {"full": list(self.parts)}

    def state(self) -> dict[str, Tensor]:
        return {f"{name}.{key}": value.detach().cpu().clone()
                for name, part in self.parts.items() for key, value in part.state_dict().items()}

    @torch.no_grad()
    def load_state(self, tensors: dict[str, Tensor]) -> None:
        for name, part in self.parts.items():
            prefix = name + "."
            part.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})

    def save(self, out_dir: Path) -> list[Path]:
        folder = Path(out_dir) / "model"
        save_pipeline(self.model.pipe, folder)
        return [folder]
