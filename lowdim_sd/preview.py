"""personalize's preview.png: the reference, then the subject in each preview prompt, a row per way of drawing.

``render_preview`` draws it; ``preview_unless_out_of_memory`` is what personalize calls, since by the preview
the adapter is written and a GPU without memory for one more picture must not make the run a failure.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import lowdim
from lowdim.injection.select import matches
from lowdim.option_words import either
from lowdim_sd import status_line
from lowdim_sd.draw_parts import (
    UNET_LAYERS,
    DrawParts,
    adapter_layers,
    applicable_parts,
    describe_draw,
    draw_text,
)
from lowdim_sd.images import to_pil
from lowdim_sd.loading import SDModel, load_sd

if TYPE_CHECKING:
    from lowdim_sd.personalize import PersonalizeRun


def preview_unless_out_of_memory(model: SDModel, reference: torch.Tensor, run: PersonalizeRun, resolution: int,
                                 adapter: Path) -> tuple[Path | None, list[tuple[str, Any]]]:
    """``render_preview``, or a warning and no preview where the GPU runs out of memory even at one picture a
    call (generate halves its pictures a call first), or where a picture comes out as NaN: the adapter is
    written by then, and the warning says what drawing it would say."""
    from lowdim_sd.finite_latents import NaNPicture

    try:
        return render_preview(model, reference, run, resolution, adapter)
    except torch.OutOfMemoryError:
        pass  # out of the handler first, so the failed call's tensors are freed
    except NaNPicture as nan:
        warnings.warn(f"no preview: {nan}; the adapter is written to {adapter}", stacklevel=2)
        return None, []
    torch.cuda.empty_cache()  # a no-op where CUDA never started
    stale = " (the preview.png there is an earlier run's)" if (Path(run.job.out) / "preview.png").is_file() else ""
    warnings.warn(f"no preview: out of GPU memory while drawing it; the adapter is written to {adapter}{stale}; "
                  f"draw it with {either(f'`lowdim generate -a {adapter}`, e.g. at --dtype fp16', DRAW_FROM_PYTHON)}",
                  stacklevel=2)
    return None, []


DRAW_FROM_PYTHON = "attach_adapters and generate, e.g. on a model loaded with load_sd(dtype='fp16')"


def render_preview(model: SDModel, reference: torch.Tensor, run: PersonalizeRun, resolution: int,
                   adapter: Path) -> tuple[Path, list[tuple[str, Any]]]:
    """preview.png: for each preview row a row, the reference then the subject in each preview prompt; and
    those cells, captioned. The plain row draws with the model as personalized; another loads the written
    adapter on a fresh model and draws it as `lowdim generate --adapter FILE:S --text-encoder-scale T
    --adapter-start F --adapter-end E` does."""
    from lowdim_sd import generate as drawing
    from lowdim_sd.grid import save_grid

    job, prompts = run.job, list(run.preview_prompts)
    images, captions, fresh = [], [], None
    rows = preview_rows(run.preview_draws, adapter_layers(adapter))
    for row, (scale, parts) in enumerate(rows):
        config = drawing.GenerateConfig(prompts=prompts, seeds=[run.seed], steps=job.preview_steps,
                                        token=job.token, resolution=resolution, parts=parts)
        drawn, how = model, describe_draw(scale, parts)
        if how:
            if fresh is None:  # one fresh model for every other row: only the adapter's scales change
                fresh = load_sd(job.model, job.device, job.dtype, job.model_config)
                drawing.attach_adapters(fresh, [(adapter, 1.0)])  # each row sets its own scale below
            view = lowdim.Adapters(fresh.modules)
            for name in view.names():
                view.set_scale(name, scale)
            drawn = fresh
        bar = (row * len(prompts), len(rows) * len(prompts))  # every row on one bar, which never runs back
        # Drawn on the terminal as personalize's bars are: the preview is minutes of a CPU's SD1.5 run.
        pictures = drawing.generate(drawn, config, progress=status_line.showing_progress(), _bar=bar)
        images += [to_pil(reference[None])[0]] + [item.image for item in pictures]
        captions += [f"reference; right: {how}" if how else "reference",
                     *(f"{prompt} ({draw_text(scale, parts)})" if how else prompt for prompt in prompts)]
    grid = save_grid(job.out / "preview.png", images, captions, ncol=len(prompts) + 1)
    return grid, list(zip(captions, images, strict=True))


def preview_rows(draws: tuple[tuple[float, DrawParts], ...], layers: list[str]) -> list[tuple[float, DrawParts]]:
    """The preview's rows for an adapter of ``layers``: each setting that acts on none of them dropped (a
    --layers unet-self file has no text-encoder part to set to 0), a row left the same as another drawn once,
    and a row that would draw no adapter at all (the text encoder's part at 0 of a text-only file) left out."""
    unet = any(matches(UNET_LAYERS, layer) for layer in layers)
    rows: list[tuple[float, DrawParts]] = []
    for scale, parts in draws:
        parts = applicable_parts(parts, layers)
        if (scale, parts) in rows or (parts.text_encoder_scale == 0 and not unet):
            continue
        rows.append((scale, parts))
    return rows

