"""What ``lowdim bench speed`` measures with: its two scales, the random-weight model it builds, the checks.

Nothing is downloaded. The full scale is SD1.5's architecture (UNet, CLIP ViT-L/14 text encoder, VAE)
and the paper's ViT-H/14 hypernetwork encoder, all built from their configs with random weights: speed
depends on shapes, not on what the weights learned. The quick scale is the tests' tiny pipeline and a
tiny ViT, for CI. The model is saved once as a diffusers folder, so "model load" times the real loader.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lowdim.atomic import atomic_write
from lowdim.disk_flush import flush_tree_to_disk
from lowdim.errors import LowdimError
from lowdim_sd.architecture import SD15_TEXT_CONFIG, SD15_UNET_CONFIG

SD15_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
}

# The paper's encoder (§4.2): ViT-H/14 at 224 px, what HyperConfig's default hub id names.
VIT_H14 = {"model_type": "vit", "hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16,
           "intermediate_size": 5120, "image_size": 224, "patch_size": 14}
VIT_TINY = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "image_size": 32, "patch_size": 8}


@dataclass(frozen=True)
class Scale:
    """How big the models are and how much each measurement repeats."""

    name: str
    resolution: int  # default image side
    finetune_steps: int  # the paper's 40 rank-relaxed steps, also the LoRA and full DreamBooth runs
    sample_steps: int  # one generation's denoising steps
    dreambooth_steps: int  # what full DreamBooth's time is extrapolated to (the paper's 1,200)
    batch_steps: int  # steps of each batched-precompute run
    subjects: tuple[int, ...]  # K of the batched-precompute runs
    rounds: int  # alternations of side-by-side variants
    repeats: int  # timed calls per variant per round
    warmup: int  # untimed calls before them
    encoder: str  # "vit-h14" or "vit-tiny"
    memory_steps: int = 2  # finetune steps of the peak-memory runs (the peak is reached in the first)


SCALES = {
    "full": Scale("full", 512, 40, 30, 1200, 10, (1, 8, 16, 32), rounds=3, repeats=5, warmup=2,
                  encoder="vit-h14"),
    "quick": Scale("quick", 16, 3, 3, 1200, 2, (1, 8, 16, 32), rounds=1, repeats=2, warmup=1,
                   encoder="vit-tiny"),
}
ENCODERS = {"vit-h14": VIT_H14, "vit-tiny": VIT_TINY}
DTYPES = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class Settings:
    """Everything a measurement depends on; results measured under other settings never mix."""

    scale: str
    device: str  # resolved: cpu, cuda, cuda:1, mps
    dtype: str  # resolved: fp32, fp16 or bf16
    resolution: int
    repeats: int

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_settings(quick: bool, device: str, dtype: str, resolution: int | None,
                     repeats: int | None) -> Settings:
    """Every bad option as one line, before any model is built (the device, the dtype on it, the side)."""
    from lowdim_sd.devices import DTYPE_MEANT, check_training_dtype, did_you_mean, resolve_device

    scale = SCALES["quick" if quick else "full"]
    torch_device = resolve_device(device)  # a missing CUDA is one line here
    if dtype not in DTYPES:
        raise LowdimError(f"--dtype must be one of {', '.join(DTYPES)}, got '{dtype}'"
                          + did_you_mean(dtype, DTYPE_MEANT, list(DTYPES)))
    chosen = ("fp16" if torch_device.type in ("cuda", "mps") else "fp32") if dtype == "auto" else dtype
    check_training_dtype(str(torch_device), chosen)
    side = resolution if resolution is not None else scale.resolution
    if side < 8 or side % 8:
        raise LowdimError(f"--resolution must be a positive multiple of 8 (the VAE works in 8 px latents), "
                          f"got {side}")
    if repeats is not None and repeats < 1:
        raise LowdimError(f"--repeats must be >= 1, got {repeats}")
    return Settings(scale.name, str(torch_device), chosen, side, repeats or scale.repeats)


def contradicting_flags(settings: Settings, quick: bool, device: str, dtype: str, resolution: int | None,
                        repeats: int | None) -> list[str]:
    """The flags typed beside --no-run that say otherwise than ``settings`` (what OUT was measured with), as
    typed: '--resolution 32'. A flag left at its default ('auto', none, no --quick) asks for nothing."""
    typed = {"scale": ("--quick", "quick" if quick else None), "device": (f"--device {device}", _device(device)),
             "dtype": (f"--dtype {dtype}", None if dtype == "auto" else dtype),
             "resolution": (f"--resolution {resolution}", resolution), "repeats": (f"--repeats {repeats}", repeats)}
    stored = settings.to_dict()
    return [flag for key, (flag, value) in typed.items() if value is not None and value != stored[key]]


def _device(device: str) -> str | None:
    """The device as Settings records it ('cuda:0' stays, 'auto' asks for none), without asking whether this
    machine has it: a table measured on a GPU is tabulated anywhere."""
    if device == "auto":
        return None
    try:
        return str(torch.device(device))
    except (RuntimeError, ValueError):
        return device  # not a device: it contradicts whatever was measured


def build_pipeline(scale: Scale, seed: int = 0):
    """A StableDiffusionPipeline of the scale's architecture with random weights (a word-list tokenizer: only
    the text encoder's size matters)."""
    from lowdim_sd.tiny import assemble_pipeline, build_tiny_pipeline

    if scale.name == "quick":
        return build_tiny_pipeline(seed)
    return assemble_pipeline(SD15_UNET_CONFIG, SD15_TEXT_CONFIG, SD15_VAE_CONFIG, seed)


READY = "lowdim-speed-model.json"  # written last: a folder without it is a save that was cut short


def saved_model(folder: Path, scale: Scale) -> Path:
    """The scale's random pipeline as a diffusers folder in ``folder``, built and saved once."""
    from lowdim_sd.bench.speed_stored import read_model_scale  # here, not above: it reads SCALES from this module

    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():  # else found only once the model is built
        raise LowdimError(f"{folder}: not a folder, where the speed benchmark saves its random model: move it away, "
                          f"or pass another --model-dir")
    marker = folder / READY
    if read_model_scale(marker) == scale.name:  # another scale's model (a shared --model-dir) is built over
        return folder
    from lowdim_sd.loading import quiet_libraries

    pipe = build_pipeline(scale)
    with quiet_libraries():  # their casting notes and shard-writing bars would break into the benchmark's bar
        if scale.name == "full":  # half the disk and the load; loading casts to the dtype each measurement asks
            pipe.to(torch.float16)
        pipe.save_pretrained(folder, safe_serialization=True)
    flush_tree_to_disk(folder)  # the weights on the disk before the marker that vouches for them
    atomic_write(marker, lambda temp: Path(temp).write_text(json.dumps({"scale": scale.name}) + "\n"))
    return folder


def photo_path(photo: Path | None, folder: Path) -> tuple[Path | None, str]:
    """(a photo with a face, where it came from): the user's, else scikit-image's astronaut, else none."""
    if photo is not None:
        if not photo.is_file():
            raise LowdimError(f"--photo {photo}: no such file")
        return photo, str(photo)
    target = folder / "astronaut.png"
    if not target.is_file():
        try:
            from PIL import Image
            from skimage import data
        except ImportError:
            return None, "no photo: pass --photo (or install scikit-image for its astronaut)"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.astronaut()).save(target)
    return target, "scikit-image's astronaut (512x512, one face)"


# What a resume must share with the run that started a folder: timings on another GPU, torch or thread count
# would mix silently into one table.
MACHINE_KEYS = ("gpu", "torch", "threads")


def machine(device: str) -> dict:
    """What the numbers are measured on (the GPU: the one ``device`` names, None on a CPU), recorded in
    OUT/settings.json by the run that starts the folder."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None}
    for package in ("diffusers", "transformers", "peft"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    return info


def machine_changes(recorded: dict, here: dict) -> str:
    """'threads 1 -> 2': how this machine differs from the one a folder was measured on ('' when it does not)."""
    return ", ".join(f"{key} {recorded.get(key)} -> {here[key]}" for key in MACHINE_KEYS
                     if recorded.get(key) != here[key])


def readable_photo(photo: Path) -> None:
    """A --photo that is missing or not an image, as one line before any model is built."""
    if not photo.is_file():
        raise LowdimError(f"--photo {photo}: no such file")
    from PIL import Image

    try:
        with Image.open(photo) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError) as error:  # PIL: "not an image" is an OSError, a bad chunk SyntaxError
        raise LowdimError(f"--photo {photo}: not a readable image ({error})") from None
