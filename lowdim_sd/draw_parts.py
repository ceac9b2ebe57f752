"""Drawing with an adapter's two parts apart: its text-encoder layers at their own scale, and its UNet layers
drawing only a window of the denoising steps.

Why (docs/ladder.md, rung 15i): an adapter finetuned on one photo changes what the text encoder makes of
the prompt, and that is what overwrites the style words ("at night", "a pencil sketch"); its UNet layers
carry most of the face. Drawing the text encoder's part at 0 keeps the prompt as the base model reads it;
letting the base UNet lay out the first steps alone keeps the style's composition, and the adapter then
draws the face into it. Handing the last steps back to the base UNet (rung 15k) keeps what the adapter's
last steps would paint over, such as a hat over the reference's hair. Of the UNet part, its cross-attention
layers (attn2, which read the prompt) are what still repaint a style (rung 15l); their own scale trades the
last styles for some of the face. All of it acts at sampling time on any adapter file, like a LoRA's scale.
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lowdim
from lowdim.errors import LowdimError
from lowdim.injection.select import matches
from lowdim.option_words import on_the_command_line, option

if TYPE_CHECKING:
    from torch import Tensor

    from lowdim.files import AdapterFile
    from lowdim_sd.loading import SDModel

TEXT_ENCODER_LAYERS = "text_encoder.*"
UNET_LAYERS = "unet.*"
CROSS_ATTENTION_LAYERS = "unet.*attn2*"  # diffusers' name for the UNet's attention to the prompt


@dataclass(frozen=True)
class DrawParts:
    """How an adapter's parts draw; the defaults draw it whole, as every loader does."""

    text_encoder_scale: float = 1.0  # multiplies each adapter's own scale on the text encoder's layers
    adapter_start: float = 0.0  # fraction of the denoising steps the UNet draws before the adapters' UNet part joins
    adapter_end: float = 1.0  # fraction of the steps after which the adapters' UNet part leaves the base UNet to finish
    cross_attention_scale: float = 1.0  # multiplies each adapter's scale on the UNet's cross-attention layers

    @property
    def whole(self) -> bool:
        return (self.text_encoder_scale == 1.0 and self.adapter_start == 0.0 and self.adapter_end == 1.0
                and self.cross_attention_scale == 1.0)

    def describe(self) -> str:
        """'text encoder's part at 0, UNet part from 30% of the steps' (empty when whole)."""
        parts = []
        if self.text_encoder_scale != 1.0:
            parts.append(f"text encoder's part at {self.text_encoder_scale:g}")
        if self.adapter_start or self.adapter_end != 1.0:
            until = f" to {self.adapter_end:.0%}" if self.adapter_end != 1.0 else ""
            parts.append(f"UNet part from {self.adapter_start:.0%}{until} of the steps")
        if self.cross_attention_scale != 1.0:
            parts.append(f"its cross-attention at {self.cross_attention_scale:g}")
        return ", ".join(parts)


# Each field's name in the short form parse_draw reads ('te=0@start=0.3').
SHORT_NAMES = {"text_encoder_scale": "te", "adapter_start": "start", "adapter_end": "end",
               "cross_attention_scale": "ca"}


def check_parts(parts: DrawParts, short_form: bool = False) -> None:
    """One line per bad value, before any model is built. Each value is named by its flag on the command line
    (whose page rewrites the flags in its own terms), from Python by the DrawParts field set, or with
    ``short_form`` by its name in the short form ('start') a Python caller wrote."""

    def named(field: str) -> str:
        return SHORT_NAMES[field] if short_form and not on_the_command_line() else option(field, "DrawParts")

    if not math.isfinite(parts.text_encoder_scale):
        raise LowdimError(f"{named('text_encoder_scale')} must be a finite number, got {parts.text_encoder_scale}")
    if not math.isfinite(parts.cross_attention_scale):
        raise LowdimError(f"{named('cross_attention_scale')} must be a finite number, got "
                          f"{parts.cross_attention_scale}")
    if not 0.0 <= parts.adapter_start < 1.0:
        raise LowdimError(f"{named('adapter_start')} must be a fraction of the steps in [0, 1), got "
                          f"{parts.adapter_start}")
    if not parts.adapter_start < parts.adapter_end <= 1.0:
        raise LowdimError(f"{named('adapter_end')} must be a fraction of the steps after {named('adapter_start')} "
                          f"({parts.adapter_start:g}) and at most 1, got {parts.adapter_end}")


def check_parts_have_adapters(parts: DrawParts, adapters: int) -> None:
    """The parts are drawn apart on the --adapter files; with none, the flags would silently do nothing."""
    if not parts.whole and not adapters:
        raise LowdimError("--text-encoder-scale, --adapter-start, --adapter-end and --cross-attention-scale act on "
                          "the --adapter files drawn, and none is given; a merged model's adapters are folded into "
                          "its weights for good, so draw their parts apart with -a FILE on the base model")


DRAW_SETTING = re.compile(r"(?:(te|start|end|ca)=)?(\d+(?:\.\d+)?(?:e[-+]?\d+)?)")  # 0.5, 1e-06 (as _number writes it)
DRAW_SYNTAX = ("S for the adapter's scale, te=T for its text encoder's part, start=F and end=F for the steps "
               "its UNet part draws, ca=C for its UNet cross-attention")


def parse_draw(text: str) -> tuple[float, DrawParts]:
    """'0.5', 'te=0', 'te=0@start=0.3@end=0.8', '0.8@te=0' -> (scale, parts): how a preview row or bench row draws
    an adapter file, settings joined by '@'."""
    values: dict[str | None, float] = {}
    for setting in text.split("@"):
        found = DRAW_SETTING.fullmatch(setting.strip())
        if found is None or found.group(1) in values:
            raise LowdimError(f"'{text}': not a way to draw an adapter ({DRAW_SYNTAX}, joined by '@', "
                              f"each at most once; e.g. te=0@start=0.3@end=0.8)")
        values[found.group(1)] = float(found.group(2))
    scale = values.get(None, 1.0)
    if not 0 < scale < math.inf:
        raise LowdimError(f"'{text}': the adapter's scale must be a positive number, got {scale:g}")
    parts = DrawParts(text_encoder_scale=values.get("te", 1.0), adapter_start=values.get("start", 0.0),
                      adapter_end=values.get("end", 1.0), cross_attention_scale=values.get("ca", 1.0))
    try:
        check_parts(parts, short_form=True)
    except LowdimError as error:
        raise LowdimError(f"'{text}': {error}") from None
    return scale, parts


def describe_draw(scale: float, parts: DrawParts) -> str:
    """'scale 0.5', "text encoder's part at 0, UNet part from 30% of the steps", or '' for the plain draw."""
    return ", ".join(filter(None, [f"scale {scale:g}" if scale != 1.0 else "", parts.describe()]))


def _number(value: float) -> str:
    """'0.3', '1e-06' and '0.5000001': the shortest text that reads back as the same float."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def draw_text(scale: float, parts: DrawParts) -> str:
    """The short form parse_draw reads: '0.5', 'te=0@start=0.3@end=0.8', '1' for the plain draw."""
    settings = [_number(scale) if scale != 1.0 else ""]
    settings += [f"te={_number(parts.text_encoder_scale)}" if parts.text_encoder_scale != 1.0 else ""]
    settings += [f"start={_number(parts.adapter_start)}" if parts.adapter_start else ""]
    settings += [f"end={_number(parts.adapter_end)}" if parts.adapter_end != 1.0 else ""]
    settings += [f"ca={_number(parts.cross_attention_scale)}" if parts.cross_attention_scale != 1.0 else ""]
    return "@".join(filter(None, settings)) or "1"


def adapted_steps(parts: DrawParts, steps: int) -> range:
    """Indices of the denoising steps the adapters' UNet part draws: those at or past the start's fraction
    and before the end's, and always at least one."""
    first = min(steps - 1, math.ceil(parts.adapter_start * steps - 1e-9))
    return range(first, max(first + 1, min(steps, math.ceil(parts.adapter_end * steps - 1e-9))))


def loop_length(scheduler: Any, steps: int) -> int:
    """How many denoising steps a pipeline asked for ``steps`` runs, each with one callback: PNDM's warm-up
    adds some (11 for 10), and the fractions must count the steps as they are run."""
    scheduler = copy.deepcopy(scheduler)  # set_timesteps changes the scheduler's state; the pipeline's stays
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


@contextmanager
def drawing_parts(model: SDModel, parts: DrawParts, steps: int) -> Iterator[Callable | None]:
    """Set the parts' scales for one pipeline call of ``steps`` steps (with the pipeline's scheduler); yields
    the pipeline's ``callback_on_step_end`` (None when the adapters draw whole). Every scale is restored
    afterwards."""
    check_parts(parts)
    if parts.whole:
        yield None
        return
    steps = loop_length(model.pipe.scheduler, steps)
    view = lowdim.Adapters(model.modules)
    for name in view.names():
        if any(s.merged_scale is not None or s.frozen_merged_scale is not None for s in view.slots(name).values()):
            raise LowdimError(f"adapter '{name}' is merged into the model, so its parts cannot be drawn apart; "
                              f"load the adapter file on a fresh model")
    slots = [(layer, slot) for name in view.names() for layer, slot in view.slots(name).items()]
    saved = [(slot, slot.scale) for _, slot in slots]
    for layer, slot in slots:
        if matches(TEXT_ENCODER_LAYERS, layer):
            slot.scale *= parts.text_encoder_scale
        elif matches(CROSS_ATTENTION_LAYERS, layer):
            slot.scale *= parts.cross_attention_scale
    unet = [(slot, slot.scale) for layer, slot in slots if matches(UNET_LAYERS, layer)]  # as scaled above
    adapted = adapted_steps(parts, steps)

    def set_unet(on: bool) -> None:
        for slot, scale in unet:
            slot.scale = scale if on else 0.0

    def set_for_next_step(pipe: Any, index: int, timestep: Tensor, callback_kwargs: dict) -> dict:
        if index + 1 in (adapted.start, adapted.stop):  # called after step ``index``: the next one changes hands
            set_unet(index + 1 in adapted)
        return callback_kwargs

    set_unet(0 in adapted)
    try:
        yield set_for_next_step
    finally:
        for slot, scale in saved:
            slot.scale = scale


def suggested_parts(keep_styles: float) -> DrawParts:
    """The parts-apart draw that kept the most of the styles for a `personalize` file (docs/results.md, session
    23): the text encoder's part at 0 and the UNet part from 30% to 80% of the steps for the plain file, from
    20% to 80% for a keep-styles file, whose finetune already keeps more of them. Ending at 80% keeps what the
    adapter's last steps would paint over (a hat over the reference's hair)."""
    return DrawParts(text_encoder_scale=0.0, adapter_start=0.2 if keep_styles else 0.3, adapter_end=0.8)


# The UNet part's cross-attention at a quarter, on top of the suggested window: on the test faces 0.997 of the
# styles, as many as the base model told the same words takes, for 0.049 of the plain file's 0.333 identity
# (0.053 of a keep-styles file's 0.356; docs/results.md, session 24). The suggestion keeps the face; this is
# the trade a user may add.
EVERY_STYLE_CROSS_ATTENTION = 0.25


def every_style_parts(keep_styles: float) -> DrawParts:
    """The suggested window with the cross-attention part at EVERY_STYLE_CROSS_ATTENTION."""
    return replace(suggested_parts(keep_styles), cross_attention_scale=EVERY_STYLE_CROSS_ATTENTION)


# Each setting as `lowdim generate` spells it: (flag, DrawParts field, the layers it acts on, what an adapter
# without them lacks), as drawing_parts applies them (the window acts on every UNet layer).
FLAGS = (("--text-encoder-scale", "text_encoder_scale", TEXT_ENCODER_LAYERS, "no text-encoder layer"),
         ("--adapter-start", "adapter_start", UNET_LAYERS, "no UNet layer"),
         ("--adapter-end", "adapter_end", UNET_LAYERS, "no UNet layer"),
         ("--cross-attention-scale", "cross_attention_scale", CROSS_ATTENTION_LAYERS,
          "no UNet cross-attention layer"))


def _asked(parts: DrawParts) -> list[tuple[str, float, str, str]]:
    """(flag, value, layers, lack) of each setting of ``parts`` off its whole-drawing default."""
    whole = DrawParts()
    return [(flag, getattr(parts, field), layers, lack) for flag, field, layers, lack in FLAGS
            if getattr(parts, field) != getattr(whole, field)]


def suggested_flags(keep_styles: float, layers: Iterable[str]) -> tuple[str, str]:
    """(the flags of suggested_parts, those every_style_parts adds) that act on ``layers``, the adapter's; ''
    where none does. Nothing for an adapter without UNet layers: its text encoder's part at 0 is no adapter."""
    layers = list(layers)
    if not any(matches(UNET_LAYERS, layer) for layer in layers):
        return "", ""
    every = DrawParts(cross_attention_scale=EVERY_STYLE_CROSS_ATTENTION)
    return (parts_flags(applicable_parts(suggested_parts(keep_styles), layers)),
            parts_flags(applicable_parts(every, layers)))


def parts_flags(parts: DrawParts) -> str:
    """'--text-encoder-scale 0 --adapter-start 0.3': the `lowdim generate` flags that draw ``parts``."""
    return " ".join(f"{flag} {_number(value)}" for flag, value, _, _ in _asked(parts))


def unmatched_flags(parts: DrawParts, layers: Iterable[str]) -> list[tuple[str, str]]:
    """(flag, what the adapters lack) for each setting of ``parts`` that acts on none of ``layers``: it changes
    nothing (a --layers unet-self adapter has no text-encoder and no cross-attention layer)."""
    layers = list(layers)
    return [(flag, lack) for flag, _, pattern, lack in _asked(parts)
            if not any(matches(pattern, layer) for layer in layers)]


def applicable_parts(parts: DrawParts, layers: Iterable[str]) -> DrawParts:
    """``parts`` with each setting that acts on none of ``layers`` back at its default: what to suggest."""
    unmatched = {flag for flag, _ in unmatched_flags(parts, layers)}
    whole = DrawParts()
    return replace(parts, **{field: getattr(whole, field) for flag, field, _, _ in FLAGS if flag in unmatched})


def adapter_layers(path: Path) -> list[str]:
    """The layer names an adapter file's parts act on, from its header alone; none for a Textual Inversion
    embedding, which loads as token vectors, never as a layer whose scale drawing_parts sets."""
    from lowdim.files import FORMAT, read_checked, unpack_layers
    from lowdim_sd.textual_inversion import is_embedding_file

    if is_embedding_file(path):
        return []
    _, metadata = read_checked(Path(path), FORMAT, "adapter", load_tensors=False)
    return [layer.name for layer in unpack_layers(metadata.get("layers", "[]"), Path(path))]


def read_layers(adapter: AdapterFile) -> list[str]:
    """``adapter_layers`` of a file ``read_adapter`` already read."""
    from lowdim_sd.textual_inversion import is_embedding

    return [] if is_embedding(adapter) else [layer.name for layer in adapter.layers]


def warn_unmatched_parts(parts: DrawParts, adapters: Sequence[tuple[Path, float]],
                         files: Sequence[AdapterFile] | None = None) -> None:
    """One warning naming the flags of ``parts`` that act on no layer of any of ``adapters`` (path, scale): they
    change nothing, and a user who set them expects a change. Reads the files' headers only, or nothing when
    ``files`` holds them as ``check_adapter_files`` read them."""
    if parts.whole or not adapters:  # none given is check_parts_have_adapters' error
        return
    layers = ([layer for adapter in files for layer in read_layers(adapter)] if files is not None
              else [layer for path, _ in adapters for layer in adapter_layers(path)])
    unmatched = unmatched_flags(parts, layers)
    if not unmatched:
        return
    flags = " and ".join(flag for flag, _ in unmatched)
    lacks = " and ".join(dict.fromkeys(lack for _, lack in unmatched))  # start and end lack the same
    one, many = len(unmatched) == 1, len(adapters) > 1
    warnings.warn(f"{flags} {'matches' if one else 'match'} no layer of the adapter{'s' * many}: "
                  f"{'they have' if many else 'it has'} {lacks}, so "
                  f"{'it changes' if one else 'they change'} nothing; leave {'it' if one else 'them'} out",
                  stacklevel=2)
