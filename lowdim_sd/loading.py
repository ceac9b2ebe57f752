"""Loading Stable Diffusion 1.x models: an alias, a hub id, a local folder, or a single .safetensors file.

Whatever the source, the result is a diffusers ``StableDiffusionPipeline`` plus a ModuleDict view
``{"unet", "text_encoder"}`` whose dotted names are the layer names lowdim adapters use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lowdim.errors import LowdimError, first_line
from lowdim.foreign_files import describe_foreign, fix_for
from lowdim.option_words import either
from lowdim.paths import expand_user
from lowdim_sd import status_line
from lowdim_sd.architecture import component_tree
from lowdim_sd.devices import resolve_device, resolve_dtype

# re-exported: skeletons, pipeline_parts, model_paths, weights_folder, text_encoder_files, merged_model and tests
from lowdim_sd.model_errors import ModelLoadError as ModelLoadError
from lowdim_sd.model_errors import looks_like_hub_id, refuse_missing_model, refuse_pickled_model
from lowdim_sd.model_names import (  # noqa: F401 (refuse_a_misspelt_name: imported from here by its callers)
    canonical_model,
    config_source,
    name_and_source,
    refuse_a_misspelt_name,
)

if TYPE_CHECKING:  # diffusers' top-level names are typed as its dummies: the class from its own module
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline

__all__ = ["ModelLoadError", "SDModel", "load_sd"]  # what help() shows: the helpers are the package's own


# diffusers/transformers load under process-wide switches (empty-weight init on 'meta', verbosity): two loads at
# once in one process break each other, so ``quiet_libraries`` blocks take turns (re-entrant: they nest).
_LOADING = threading.RLock()
IN_USE = "this model is in use by another run in this process; load another with load_sd or wait"


@dataclass
class SDModel:
    """A loaded SD1.x pipeline and where it came from."""

    pipe: StableDiffusionPipeline
    name: str
    source: str
    device: torch.device
    dtype: torch.dtype
    # Held by a run on the model (run_train, generate, attach_adapters change its adapters, scheduler, train mode):
    # two at once corrupt each other. Re-entrant: a run may call another on its own model in its own thread.
    _in_use: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False, compare=False)
    # (adapter name, '' for an embedding; file; scale; token) per file attach_adapters loaded: draw_to_folder's record.
    attached: list = field(default_factory=list, init=False, repr=False, compare=False)

    @classmethod
    def from_pipeline(cls, pipe: Any, name: str | None = None) -> SDModel:
        """A ``StableDiffusionPipeline`` the caller already has, as the model ``run_train(model=)``,
        ``personalize(model=)``, ``generate`` and ``attach_adapters`` take, with no second load.

        ``name`` is what adapter files record as their base model and what a job's ``model`` must name: a
        registered model (``"sd15"``, ``"tinyfaces"``), a hub id or a folder; by default the folder or hub id the
        pipeline was loaded from (a pipeline built in this process has none: pass one). The device and dtype are
        read from the UNet's and text encoder's weights, which must agree. Nothing on the pipeline changes: its
        progress bar stays as set, and its parameters keep ``requires_grad`` (``from_pretrained`` leaves them
        trainable); a run freezes what it does not train for its own time, then puts every flag back, no
        ``.grad`` left."""
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline

        where = "SDModel.from_pipeline"
        if not isinstance(pipe, StableDiffusionPipeline):
            raise LowdimError(f"{where} takes a diffusers StableDiffusionPipeline (SD1.x), got a "
                              f"{type(pipe).__name__}")
        name = name or pipe.name_or_path
        if not name:
            raise LowdimError(f"{where}: the pipeline does not say which model it is (built in this process?); pass "
                              f"name=..., a registered model, hub id or folder, which its adapter files record")
        name, source = name_and_source(name, refuse_typos=False)  # a label: no hub lookup for a typo to waste
        return cls(pipe, name, source, *pipeline_placement(pipe, where))

    @contextlib.contextmanager
    def one_run(self) -> Iterator[None]:
        """The model for this run alone: another thread's run on it is refused in one line, not waited for (a
        service would hang on a training run) nor let through (it would draw with half-trained adapters)."""
        if not self._in_use.acquire(blocking=False):
            raise LowdimError(IN_USE)
        try:
            yield
        finally:
            self._in_use.release()

    @property
    def base_model_id(self) -> str:
        """What adapter files record as their base model: the hub id, or the name (``load_sd`` keeps a registered
        model's own name, never an alias, so ``-m mini`` and ``-m minisd`` write one record).

        A backend whose weights ship on disk (TinyFaces) is recorded by its name, not by a path that only exists on
        this machine; a folder or file given by path as an absolute one, so `lowdim show`'s line runs from anywhere.
        """
        return self.name if self.source != self.name and Path(self.source).exists() else canonical_model(self.source)

    @property
    def modules(self) -> nn.ModuleDict:
        """UNet and text encoder under the names every lowdim layer name starts with."""
        if not hasattr(self, "_modules"):
            self._modules = component_tree(self.pipe.unet, self.pipe.text_encoder)
        return self._modules

    @property
    def noise_scheduler(self):
        """The training-time (DDPM) view of the pipeline's scheduler: same betas, same prediction type."""
        if not hasattr(self, "_noise_scheduler"):
            from diffusers import DDPMScheduler

            self._noise_scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        return self._noise_scheduler

    @property
    def taught(self) -> list[str] | None:
        """The words a model `lowdim merge` wrote was taught ([] where its record names none); None for any
        other model. Its adapters are in its weights, so no adapter file is left to name them."""
        if not hasattr(self, "_taught"):
            from lowdim_sd.taught_tokens import merged_tokens

            self._taught = merged_tokens(self.source)
        return self._taught

    @property
    def resolution(self) -> int:
        return int(self.pipe.unet.config.sample_size) * int(self.pipe.vae_scale_factor)


@contextlib.contextmanager
def quiet_libraries():
    """diffusers/transformers chatter (progress bars, offline notices) is not for our users."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, transformers_logging)
    hub = logging.getLogger("huggingface_hub")
    with _LOADING:
        before = [(library.get_verbosity(), library.is_progress_bar_enabled()) for library in libraries]
        hub_level = hub.level
        for library in libraries:
            library.set_verbosity_error()
            library.disable_progress_bar()
        hub.setLevel(logging.ERROR)
        try:
            yield
        finally:  # as they were: a program that imports lowdim keeps its own settings
            for library, (level, bars) in zip(libraries, before, strict=True):
                library.set_verbosity(level)
                if bars:
                    library.enable_progress_bar()
            hub.setLevel(hub_level)


def load_pipeline(source: str, dtype: torch.dtype, config: str | None = None, config_name: str | None = None):
    """``source`` is a local diffusers folder, a single-file checkpoint, or a hub id; ``config_name`` is
    ``config`` as its reader typed it (a registered name), for the lines that name it."""
    from lowdim_sd.pipeline_parts import check_tokenizer

    pipe = _read_pipeline(source, dtype, config, config_name)
    check_tokenizer(pipe, source)
    return pipe


def _read_pipeline(source: str, dtype: torch.dtype, config: str | None, config_name: str | None):
    """The pipeline ``source`` names, as the single file, diffusers folder or hub id it is; a pickle is refused."""
    from lowdim_sd.pipeline_parts import UNUSED_PARTS, load_folder

    path = expand_user(source)
    kwargs = {dtype_keyword(): dtype, **dict.fromkeys(UNUSED_PARTS), "requires_safety_checker": False}
    refuse_pickled_model(path)
    if path.is_file():
        return _read_single_file(path, config, config_name, kwargs)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise not_a_pipeline_folder(path)
        return load_folder(path, kwargs)
    from lowdim.atomic import refuse_special

    refuse_special(path)  # there, but neither file nor folder (a FIFO, a device): named as what it is
    refuse_missing_model(source, path)
    return _read_hub(source, kwargs)


def _read_single_file(path: Path, config: str | None, config_name: str | None, kwargs: dict):
    """A single-file checkpoint's pipeline, with ``config`` (a folder of configs) where given; a file that is no
    checkpoint, or one missing a part, is refused by name before diffusers' own error would."""
    from diffusers import StableDiffusionPipeline

    from lowdim_sd.ldm_checkpoint import incomplete_file_error, incomplete_part, missing_from_file
    from lowdim_sd.model_paths import refuse_what_is_not_a_checkpoint
    from lowdim_sd.pipeline_parts import single_file_error
    from lowdim_sd.weights_folder import check_single_file

    foreign = describe_foreign(path) if path.suffix.lower() == ".safetensors" else None
    if foreign is not None:
        # Only a pickle or zip checkpoint can be converted; a picture or a text file is just the wrong file.
        fix = ("pickles can run code when loaded: convert it to a real .safetensors first"
               if "pickle" in foreign else "pass a model checkpoint, or a diffusers folder")
        raise ModelLoadError(f"{path}: this is {foreign}; {fix_for(foreign, fix)}")
    refuse_what_is_not_a_checkpoint(path)
    label = config_option(config_name or config) if config else None
    check_single_file(path, config, label)
    try:
        pipe = StableDiffusionPipeline.from_single_file(str(path), config=config, **kwargs)
    except Exception as error:  # diffusers raises many types here, all meaning "cannot read this"
        folder = expand_user(config) if config else None
        gap = missing_from_file(path, folder) if folder is not None and folder.is_dir() else None
        raise (single_file_error(path, first_line(error), label) if gap is None
               else incomplete_file_error(path, *gap)) from None
    # A part the file holds only some of is left on 'meta', which pipe.to() would meet as torch's traceback.
    gap = incomplete_part(pipe)
    if gap is not None:
        raise incomplete_file_error(path, *gap)
    return pipe


def _read_hub(source: str, kwargs: dict):
    """A hub id's pipeline: its cached copy, else the hub's, safetensors only (a repository of *.bin is refused)."""
    from diffusers import StableDiffusionPipeline
    from huggingface_hub.errors import HFValidationError  # a name the hub's own rules refuse ("a..b")

    from lowdim_sd.pipeline_parts import load_cached

    cached = load_cached(source, kwargs)  # a cached copy is checked as a folder is, and says what is wrong with it
    if cached is not None:
        return cached
    try:
        return StableDiffusionPipeline.from_pretrained(source, use_safetensors=True, **kwargs)
    except (OSError, HFValidationError) as error:
        raise hub_id_not_found(source) from error


def not_a_pipeline_folder(path: Path) -> ModelLoadError:
    """The line for a folder with no model_index.json given as the model (the ui's model box says it too); a part
    of a pipeline (its unet/) is pointed to the pipeline folder above it, which is the model."""
    from lowdim_sd.model_tree import pass_the_pipeline

    return ModelLoadError(f"{path}: not a diffusers pipeline folder (no model_index.json){pass_the_pipeline(path)}")


def warn_unused_configs(model: str | Path, config: str | None) -> None:
    """A diffusers folder or hub id loads with its own configs: ``--model-config`` serves a single file alone, and
    one given here would otherwise be dropped without a word (a reader taking it to replace the folder's)."""
    if config is not None:
        warnings.warn(f"{config_option(config)}: not used: {model} is a diffusers pipeline, which loads with its own "
                      f"configs (the option serves a single .safetensors file)", stacklevel=3)


def hub_id_not_found(source: str, flag: str = "--model") -> ModelLoadError:
    """The one line for a hub id neither cached nor reachable; public so ``lowdim inspect`` says it word for word.
    ``flag`` is the option that named it: ``--model-config`` takes a folder only, never a checkpoint; from
    Python, the model or ``load_sd(config=...)``."""
    if flag == "--model-config":
        where = either("--model-config PATH", f"its path as {config_option()}")
        takes = "a diffusers folder of the same model"
    else:
        where = either(f"{flag} PATH", "its path as the model")
        takes = "a diffusers folder or a .safetensors checkpoint"
    # A bare word is rarely a hub id and often a plugin's model whose package is not (or no longer) installed.
    installed = ("no installed model (lowdim models lists them; a plugin's model needs its package), "
                 if "/" not in source and flag != "--model-config" else "")
    return ModelLoadError(
        f"could not load '{source}': {installed}no local folder or file of that name, and the hub id is neither in "
        f"the local cache nor reachable; download it where there is network, then pass {where} ({takes})"
    )


def config_option(value: str | None = None) -> str:
    """The option naming a single file's configs as its reader typed it, with ``value`` when given:
    ``--model-config X`` on the command line, ``load_sd(config='X')`` from Python."""
    if value is None:
        return either("--model-config", "load_sd(config=...)")
    return either(f"--model-config {value}", f"load_sd(config={value!r})")


def dtype_keyword(diffusers_version: str | None = None) -> str:
    """How ``from_pretrained`` and ``from_single_file`` take the dtype: ``dtype`` since diffusers 0.40,
    which deprecates ``torch_dtype`` (removed in 1.0), and ``torch_dtype`` before, the only spelling known."""
    if diffusers_version is None:
        from importlib.metadata import version

        diffusers_version = version("diffusers")
    major, minor = (_leading_number(part, diffusers_version) for part in diffusers_version.split(".")[:2])
    return "dtype" if (major, minor) >= (0, 40) else "torch_dtype"


def part_dtype_option(model_class: type, options: dict[str, Any]) -> dict[str, Any]:
    """The dtype of the pipeline's ``options`` in the keyword ``model_class.from_pretrained`` takes when one part
    loads alone: the pipeline's for a diffusers model, and for a transformers one ``dtype`` from transformers 4.56
    on (which deprecates ``torch_dtype``), as diffusers passes it."""
    from transformers import PreTrainedModel

    keyword = dtype_keyword()
    if keyword not in options:
        return {}
    if issubclass(model_class, PreTrainedModel):
        from importlib.metadata import version

        numbers = tuple(int(re.sub(r"\D.*", "", part) or 0) for part in version("transformers").split(".")[:2])
        return {"dtype" if numbers >= (4, 56) else "torch_dtype": options[keyword]}
    return {keyword: options[keyword]}


def _leading_number(part: str, version: str) -> int:
    found = re.match(r"\d+", part)
    if found is None:
        raise LowdimError(f"diffusers {version}: not a version number lowdim can read (expected MAJOR.MINOR...)")
    return int(found.group())


def load_sd(model: str | os.PathLike[str], device: str = "auto", dtype: str = "auto",
            config: str | None = None) -> SDModel:
    """Load ``model``: a registered name or alias (sd15, tinyfaces, ...), a hub id, a folder or a file (a str
    or a Path)."""
    if not isinstance(model, (str, os.PathLike)):  # else an AttributeError from deep in the name lookup
        raise LowdimError(f"load_sd: model= takes a registered name, a hub id or a path (a str or Path), "
                          f"got a {type(model).__name__}")
    model = os.fspath(model)
    name, source = name_and_source(model)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    resolved = config_source(source, config)
    if config is not None and not expand_user(source).is_file() and (expand_user(source).is_dir()
                                                                     or looks_like_hub_id(source)):
        warn_unused_configs(model, config)  # named as typed (tinyfaces, not its folder)
    # The spinner (on a terminal, in a run that shows one: status_line) from before diffusers is imported, the first
    # run's longest wait without a bar; quiet: also diffusers' "will fail" about fp16 on a CPU, which runs, slowly.
    with status_line.saying(f"loading the model {model}"), quiet_libraries():
        pipe = load_pipeline(source, torch_dtype, resolved, config)
        pipe.to(torch_device)
    pipe.set_progress_bar_config(disable=True)
    for part in (pipe.unet, pipe.text_encoder, pipe.vae):
        part.requires_grad_(False)
    return SDModel(pipe, name, source, torch_device, torch_dtype)


def pipeline_placement(pipe: Any, where: str) -> tuple[torch.device, torch.dtype]:
    """The one device and dtype of the pipeline's UNet and text encoder weights; parts that disagree, or that
    are on ``meta`` (no weights), are refused in one line starting with ``where``."""
    found = {}
    for label, part in (("UNet", pipe.unet), ("text encoder", pipe.text_encoder)):
        found.update({(p.device, p.dtype): label for p in part.parameters() if p.is_floating_point()})
    if any(device.type == "meta" for device, _ in found):
        if offloaded_by_accelerate(pipe):
            raise LowdimError(f"{where}: {SEQUENTIAL_OFFLOAD}")
        raise LowdimError(f"{where}: the pipeline is on the meta device (no weights): load its weights first")
    if len(found) != 1:
        parts = [f"{label} is {dtype} on {device}" for (device, dtype), label in found.items()]
        raise LowdimError(f"{where}: the pipeline's {' and its '.join(parts[:2])}; put it on one device in one "
                          f"dtype first, e.g. pipe.to('cuda', torch.float16)")
    return next(iter(found))


# Sequential offload (or a device_map that offloads) leaves each layer's weights on 'meta' while accelerate's hook
# holds them and puts them in place for one call at a time: an adapter cannot wrap them. Model offload moves
# whole parts with their weights, adapters included, and works as without it.
SEQUENTIAL_OFFLOAD = ("accelerate's offload holds the pipeline's weights (enable_sequential_cpu_offload, or a "
                      "device_map that offloads), leaving its layers empty on the meta device, so lowdim cannot adapt "
                      "them; pipe.remove_all_hooks() puts them back, and pipe.enable_model_cpu_offload() saves GPU "
                      "memory with lowdim's adapters")


def offloaded_by_accelerate(pipe: Any) -> bool:
    """Whether accelerate's hooks (``_hf_hook``) sit on the UNet's or text encoder's layers."""
    return any(hasattr(module, "_hf_hook") for part in (pipe.unet, pipe.text_encoder) for module in part.modules())
