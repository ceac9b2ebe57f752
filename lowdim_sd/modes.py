"""What trains in each mode. Every mode gives the engine a ``Trainable`` (see ``lowdim_sd.train``).

(a) full DreamBooth: the UNet (and optionally the text encoder) itself;
(b, c, any plugin space) an adapter of a registered space, one per subject;
(d) rank-relaxed fast finetuning: an initial adapter frozen (or merged) plus a new LoRA of rank r.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor

import lowdim
from lowdim.atomic import replace_folder, temp_place
from lowdim.errors import LowdimError
from lowdim.filecheck import printable_name
from lowdim.files import atomic_write
from lowdim.injection import LayerSet
from lowdim.option_words import either, on_the_command_line
from lowdim.spaces.base import Space
from lowdim_sd.embedding_undo import tokens_undone
from lowdim_sd.loading import SDModel
from lowdim_sd.registered_models import model_layer_set
from lowdim_sd.text_encoder_files import save_pipeline
from lowdim_sd.train_settings import DEFAULT_TOKEN

if TYPE_CHECKING:
    from lowdim_sd.train_settings import Subject, TrainConfig

ADAPTER = "subject"


def resolve_layers(name_or_patterns: str | None, model: str | None = None) -> LayerSet:
    """A layer set of ``model`` by name (its default when None) or comma-separated glob patterns: a registered
    model's own sets, the ones `lowdim inspect` counts; SD1.5's (default unet+text) for a path, a hub id or no
    model. ``lowdim_sd.registered_models.model_layer_set``, for the callers that have torch loaded."""
    return model_layer_set(name_or_patterns, model)


@contextlib.contextmanager
def left_as_given(model: SDModel, tokens: bool = False,
                  initial: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Hand a caller's model back as it came, however the run in the block ends (done, failed, Ctrl-C): else a
    second run, or the --resume a stop recommends, is refused on it ('subject' exists), and an adapter trained
    from Python would pile onto what the caller draws or merges next. The adapters the run added are deleted,
    unmerged first (rank relaxation merges the initial one into the base weights); with ``tokens`` (Textual
    Inversion appends [V]'s tokens and embedding rows) the tokenizer and the table are put back too. With
    ``initial`` (the adapter file rank relaxation merges) its layers' base weights are copied back bit for bit:
    unmerging subtracts what merging added, which rounds (1e-7 in fp32, 1e-4 in fp16). The model's own weights are
    frozen for the block (``base_frozen``), their ``requires_grad`` and ``.grad`` put back after."""
    before = set(lowdim.Adapters(model.modules).names())
    weights = base_weights(model, initial) if initial is not None else {}
    undone = tokens_undone(model) if tokens else contextlib.nullcontext()
    with base_frozen(model), undone:  # the tokens go after the adapters below are gone
        try:
            yield
        finally:
            adapters = lowdim.Adapters(model.modules)
            for name in reversed([name for name in adapters.names() if name not in before]):
                adapters.delete(name)
            with torch.no_grad():
                for layer, weight in weights.items():
                    _base_weight(model, layer).copy_(weight)


@contextlib.contextmanager
def base_frozen(model: SDModel) -> Iterator[None]:
    """The UNet, text encoder and VAE frozen for the block, then each parameter's ``requires_grad`` and ``.grad`` as
    they were. A pipeline the caller built (``from_pretrained`` leaves every weight trainable) would otherwise have
    every backward compute, and keep, a gradient of every base weight: full DreamBooth's memory for an adapter's
    run. Parameters added in the block (the adapters') are not touched: the block's own code deletes them."""
    pipe = model.pipe
    parts = [part for part in (pipe.unet, pipe.text_encoder, getattr(pipe, "vae", None)) if part is not None]
    given = {param: (param.requires_grad, param.grad) for part in parts for param in part.parameters()}
    try:
        for param in given:
            param.requires_grad_(False)
        yield
    finally:
        for param, (requires_grad, grad) in given.items():
            param.requires_grad_(requires_grad)
            param.grad = grad


def base_weights(model: SDModel, adapter: str | os.PathLike[str]) -> dict[str, Tensor]:
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
    return cast(Tensor, getattr(module, "base_layer", module).weight)  # a Module attribute: torch types it loosely


class AdapterTrainable:
    """An adapter (of any space) trained for one subject, or K subjects in one batch."""

    def __init__(self, model: SDModel, name: str, subject_names: list[str], metadata: dict[str, Any],
                 save_dtype: str = "fp32") -> None:
        self.model = model
        self.save_dtype = save_dtype  # of the files ``save`` writes; checkpoints keep full precision
        self.adapters = lowdim.Adapters(model.modules)
        self.name = name
        self.subject_names = subject_names
        self.num_subjects = len(subject_names)
        # save_adapter's keywords (base_model, token, extra: the recipe). An unset word (a TrainConfig's token None)
        # trains as DEFAULT_TOKEN (``fill_prompt``): the file says so.
        self.metadata = {**metadata, "token": DEFAULT_TOKEN} if metadata.get("token", "") is None else metadata
        self.subject_extras: list[dict] = []  # per subject, added to the file's recipe (``record_recipe``)
        self.parameters = self.adapters.parameters(name)

    def state(self) -> dict[str, Tensor]:
        return {f"{layer}/{key}": value.detach().cpu()
                for layer, params in self.adapters.tensors(self.name).items() for key, value in params.items()}

    def load_state(self, tensors: dict[str, Tensor]) -> None:
        """What ``state`` wrote, back into the adapter; a key it cannot have written (a stray tensor under a real
        layer too: ``load_tensors`` refuses it) is one line naming it."""
        layers = set(self.adapters.slots(self.name))
        nested: dict[str, dict[str, Tensor]] = {}
        for key, value in tensors.items():
            layer, _, param = key.rpartition("/")
            if not layer:  # no layer part ("evil", "/A_train"): named whole, as an unexpected layer, not the layer ''
                if key in layers:  # a bare layer name would read as a stray param of that layer
                    raise LowdimError(f"tensor {printable_name(key)} names no param of its layer; a checkpoint "
                                      f"names each tensor LAYER/PARAM")
                layer = key
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
                                sample=index if batched else None, dtype=self.save_dtype, **self._metadata(index))
            for index, subject in enumerate(self.subject_names)
        ]

    def _metadata(self, index: int) -> dict[str, Any]:
        """What subject ``index``'s file records: the run's metadata, its own part of the recipe added."""
        if not self.subject_extras:
            return self.metadata
        return {**self.metadata, "extra": {**self.metadata.get("extra", {}), **self.subject_extras[index]}}


def adapter_trainable(model: SDModel, space: Space, layers: LayerSet, *, seed: int = 0,
                      subject_names: list[str] | None = None, token: str | None = DEFAULT_TOKEN,
                      save_dtype: str = "fp32", dropout: float = 0.0) -> AdapterTrainable:
    """Inject a fresh adapter; with several subject names, one per-sample adapter each. ``dropout``: the
    adapter's input dropout while it trains (``Adapters.add``). ``token`` None: DEFAULT_TOKEN, as a TrainConfig's."""
    if getattr(space, "learns_tokens", False):  # else it would write rows of the attention weights
        train_it = either(f"`lowdim train --space {space.name}`", f"run_train(TrainJob(space={space.name!r}))")
        raise LowdimError(f"space '{space.name}' learns token vectors, not weight layers: train it with {train_it}")
    names = subject_names or ["adapter"]
    batch = len(names) if len(names) > 1 else None
    lowdim.Adapters(model.modules).add(ADAPTER, space, layers, seed=seed, batch=batch, dropout=dropout)
    return AdapterTrainable(model, ADAPTER, names, {"base_model": model.base_model_id, "token": token},
                            save_dtype=save_dtype)


def relaxed_trainable(model: SDModel, initial: str, *, rank: int = 4, merge_frozen: bool = True,
                      seed: int | None = None, subject_name: str = "adapter", metadata: dict[str, Any],
                      save_dtype: str = "fp32", dropout: float = 0.0) -> AdapterTrainable:
    """Paper §4.3, the one rank-relaxation path (personalize, ``train --init``, the bench rows): the model's
    adapter ``initial`` frozen (merged into the weights with ``merge_frozen``) plus a new LoRA of rank r.

    ``seed`` seeds the LoRA's init (default: the initial adapter's seed).
    """
    lowdim.relax_rank(lowdim.Adapters(model.modules), initial, ADAPTER, lowdim.get_space("lora", rank=rank),
                      merge_frozen=merge_frozen, seed=seed, dropout=dropout)
    return AdapterTrainable(model, ADAPTER, [subject_name], metadata, save_dtype=save_dtype)


def rank_relaxed_trainable(model: SDModel, initial: str | os.PathLike[str], *, rank: int = 4, merge_frozen: bool = True,
                           subject_name: str = "adapter", token: str | None = None,
                           save_dtype: str = "fp32", dropout: float = 0.0) -> AdapterTrainable:
    """Paper §4.3 from a file: load ``initial`` (e.g. a predicted LiDB), then ``relaxed_trainable``."""
    from lowdim_sd.divergence import note_start
    from lowdim_sd.textual_inversion import refuse_embedding_start

    refuse_embedding_start(initial)
    info = lowdim.load_adapter(initial, lowdim.Adapters(model.modules), name="initial")
    start = [value for params in lowdim.Adapters(model.modules).tensors("initial").values()
             for value in params.values()]
    learned = str(info.metadata.get("token") or "")
    if token and learned and token != learned:  # its frozen part still calls the subject by its own word
        given, leave = ((f"--token {token!r}", "leave --token out") if on_the_command_line() else
                        (f"TrainConfig(token={token!r})", "leave TrainConfig.token unset"))
        warnings.warn(f"{initial} learned its subject under the word {learned!r}; with {given} the new LoRA trains "
                      f"under another word ({leave} to train under {learned!r})", stacklevel=3)
    metadata = {"base_model": model.base_model_id, "token": token or learned or DEFAULT_TOKEN}
    trainable = relaxed_trainable(model, "initial", rank=rank, merge_frozen=merge_frozen, subject_name=subject_name,
                                  metadata=metadata, save_dtype=save_dtype, dropout=dropout)
    note_start(trainable.parameters, start)  # a divergence then names a huge start, not the learning rate
    return trainable


class FullTrainable:
    """Full DreamBooth: every UNet weight (and the text encoder's, if asked) trains."""

    num_subjects = 1
    trains_model_weights = True  # AdamW then updates the model's own tensors, in the model's dtype

    def __init__(self, model: SDModel, train_text_encoder: bool = False) -> None:
        self.model = model
        self.parts = {"unet": model.pipe.unet}
        if train_text_encoder:
            self.parts["text_encoder"] = model.pipe.text_encoder
        self.record: dict = {}  # what the saved folder records of its making (``record_recipe``)
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
        # Each part's load_state_dict is strict, but sees only its own prefix: a key of no part trained would be
        # left out of every load without a word (a text encoder's, in a run that trains the UNet only).
        prefixes = tuple(name + "." for name in self.parts)
        if stray := sorted(key for key in tensors if not key.startswith(prefixes)):
            raise LowdimError(f"unexpected tensor {printable_name(stray[0])}: this run trains the "
                              f"{' and the '.join(self.parts)} only (a checkpoint names each tensor PART.NAME)")
        for name, part in self.parts.items():
            prefix = name + "."
            part.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})

    def save(self, out_dir: Path) -> list[Path]:
        """The trained pipeline as ``out_dir/model``, with its record (``record_recipe``): written in a hidden place
        beside it and renamed there at the end, so a failed or stopped save leaves no half model."""
        given = Path(out_dir) / "model"
        folder = Path(os.path.abspath(given))
        with temp_place(folder) as staging:
            staging.mkdir()  # with the umask's permissions, which the renamed folder keeps
            save_pipeline(self.model.pipe, staging)
            if self.record:
                from lowdim_sd.merged_model import RECORD  # the record `lowdim show` and generate's [V] read

                atomic_write(staging / RECORD, lambda name: Path(name).write_text(json.dumps(self.record, indent=1)))
            replace_folder(staging, folder)
        return [given]


def initial_token(initial: str | os.PathLike[str] | None, token: str | None) -> str:
    """The word a run trains under: ``token`` as given, else the one ``initial`` (--init's adapter) learned, whose
    frozen part calls the subject by it, else sks. A file that cannot be read gives none: its load says why."""
    if token is not None:
        return token
    if initial is None or not Path(initial).is_file():  # a FIFO's open would wait for a writer, Ctrl-C or not
        return DEFAULT_TOKEN
    from safetensors import safe_open

    try:
        with safe_open(str(initial), framework="pt") as file:
            learned = (file.metadata() or {}).get("token")
    except Exception:  # safetensors raises its own error types for every way a file is broken
        learned = None
    return learned or DEFAULT_TOKEN


def record_recipe(trainable: object, config: TrainConfig, subjects: list[Subject], initial: Path | None = None) -> None:
    """Store what made the files `lowdim train` writes in them: the prompt template, steps, rate, image count and
    torch's thread count (`lowdim show` prints them and suggests the prompt), and the --init adapter it finetuned
    (its absolute path, as personalize records its hypernetwork, and the sha256 of its bytes); a --full model also
    its base and word, in the record a merged model carries, so generate's [V] calls the trained subject."""
    recipe: dict[str, Any] = {"made_by": "lowdim train", "prompt": config.prompt, "steps": config.steps,
                              "learning_rate": config.learning_rate, "batch_size": config.batch_size,
                              # The same seed gives the same bytes only on as many CPU threads (docs/sd.md,
                              # Determinism): a kernel's sums split over them. As personalize's recipe says it.
                              "threads": torch.get_num_threads()}
    if initial is not None:
        path = Path(initial).resolve()
        recipe["init"] = {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if isinstance(trainable, FullTrainable):
        model = trainable.model
        # The prompt keeps [V]: generate calls the model's recorded word by it, as it does a merged model's.
        trainable.record = {"base_model": model.base_model_id, "adapters": [], "tokens": [config.token], **recipe,
                            "made_by": "lowdim train --full", "images": len(subjects[0].images),
                            "text_encoder_trained": "text_encoder" in trainable.parts}
    elif isinstance(trainable, AdapterTrainable):
        trainable.metadata["extra"] = recipe
        trainable.subject_extras = [{"images": len(subject.images)} for subject in subjects]
