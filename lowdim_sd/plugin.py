"""Registers the SD1.x backend through lowdim's plugin hooks, like any third-party plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lowdim.backends import Backend
from lowdim.hookspecs import RegisterBackend, RegisterMetric, hookimpl
from lowdim_sd import architecture, defaults

if TYPE_CHECKING:  # loading plugins (`lowdim --help` lists their commands) must not import torch
    from collections.abc import Sequence

    from torch import Tensor, nn

    from lowdim.foreign_files import ForeignFile

# lowdim's own (lowdim.plugins.FIRST_PARTY): its names (sd15, its aliases) are lowdim's as much as the built-in
# spaces' are, though it loads as the entry point `sd` (so LOWDIM_NO_PLUGINS leaves it out, and a core install
# without diffusers still starts).
LOWDIM_FIRST_PARTY = __name__

SD15_HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"


class SDBackend(Backend):
    """Any SD1.x-architecture model. ``source`` is what ``--model NAME`` loads: a hub id or a folder.

    Plugins register their own SD1.x models (e.g. TinyFaces) as instances with another name and source.
    """

    layer_sets = architecture.LAYER_SETS
    default_layer_set = "unet+text"
    # Its subjects are face photos, cropped to the face by default (False: a face detector can't read them).
    crops_faces: bool = True
    # A trained hypernetwork checkpoint for this model: `lowdim personalize` starts from its prediction.
    default_hypernet: str | None = None
    # The fast finetune after a prediction (and the --no-hyper ablation of it): images per step and rate.
    finetune_batch: int = defaults.FINETUNE_BATCH
    finetune_lr: float = defaults.FINETUNE_LR
    # Reads the subject's looks from the reference (3, H, W) in [-1, 1] as words the model's captions use
    # (" with ginger long hair"); personalize puts them after "[V] <noun>" in its preview prompts. None: none.
    describe_subject: Callable[[Tensor], str] | None = None
    # How the preview draws the adapter, one row each (lowdim_sd.draw_parts.parse_draw: "0.5" a scale,
    # "te=0@start=0.3" its parts apart), as `lowdim generate` can. One row by default: at 512 px a CPU draws slowly.
    preview_draws: tuple[str, ...] = ("1",)
    # Prompts for preview grids after personalization; [V] stands for the subject's identifier.
    preview_prompts: tuple[str, ...] = ("a photo of a [V] face", "a painting of a [V] face in the style of van gogh",
                                        "a pencil sketch of a [V] face", "a [V] face at night")
    # Prompts of `lowdim bench quality`: styles and recontextualisations, like the paper's 30.
    bench_prompts: tuple[str, ...] = (
        "a photo of a [V] face", "a close-up portrait of a [V] face", "a pencil sketch of a [V] face",
        "a painting of a [V] face in the style of van gogh", "a pop-art poster of a [V] face",
        "a [V] face at night", "a [V] face on a red background", "a [V] face wearing a hat",
        "a [V] face at the beach", "a [V] face in a cyberpunk city", "a watercolor painting of a [V] face",
        "a [V] face wearing sunglasses",
    )

    def __init__(self, name: str, source: str, description: str = "", aliases: tuple[str, ...] = (),
                 skeleton: Callable[[], nn.Module] | None = None, preview_prompts: tuple[str, ...] | None = None,
                 bench_prompts: tuple[str, ...] | None = None, crops_faces: bool | None = None,
                 default_hypernet: str | None = None, finetune_batch: int | None = None,
                 finetune_lr: float | None = None, describe_subject: Callable[[Tensor], str] | None = None,
                 preview_draws: tuple[str, ...] | None = None) -> None:
        self.name, self.source, self.description, self.aliases = name, source, description, aliases
        self._skeleton = skeleton
        if preview_prompts:
            self.preview_prompts = preview_prompts
        if bench_prompts:
            self.bench_prompts = bench_prompts
        if crops_faces is not None:
            self.crops_faces = crops_faces
        if default_hypernet:
            self.default_hypernet = default_hypernet
        if finetune_batch:
            self.finetune_batch = finetune_batch
        if finetune_lr:
            self.finetune_lr = finetune_lr
        if describe_subject is not None:
            self.describe_subject = describe_subject
        if preview_draws:
            self.preview_draws = preview_draws

    def skeleton(self) -> nn.Module:
        if self._skeleton is None:
            from lowdim_sd.loading import load_sd

            return load_sd(self.name).modules
        return self._skeleton()

    def layer_group(self, layer_name: str) -> str:
        return architecture.layer_group(layer_name)

    def foreign_file_kind(self, keys: Sequence[str]) -> str | None:
        from lowdim_sd.foreign_file_words import checkpoint_kind

        return checkpoint_kind(keys)

    def foreign_file_advice(self, file: ForeignFile) -> str | None:
        from lowdim_sd.foreign_file_words import advice

        return advice(file)


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register(SDBackend(
        "sd15", SD15_HUB_ID, aliases=("sd1.5", "stable-diffusion-1.5"), skeleton=architecture.sd15_skeleton,
        description=f"Stable Diffusion 1.5 ({SD15_HUB_ID}); UNet + CLIP ViT-L/14 text encoder",
    ))


@hookimpl
def register_metrics(register: RegisterMetric) -> None:
    """The paper's four metrics (``lowdim eval``); each loads its model only when built."""
    from lowdim_sd.eval.paper_metrics import FACTORIES

    for name, factory in FACTORIES.items():
        register(name, factory)
