"""Draw: more pictures of a subject, from a finished run's adapter or from an adapter file one already has.

An uploaded file is checked as ``lowdim generate -a`` checks it (``check_adapter_files`` on its own, then the
model's layers when it is attached), so a bad file is the same one line. The default prompt carries the looks
the run's describer read (``recipe: looks`` in the file), as the CLI's ``draw it:`` line does: without them
the UNet part draws the wrong hair.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lowdim.errors import LowdimError
from lowdim_sd import stopping
from lowdim_sd.ui.checks import DENOISING_STEPS, PICTURES, check_model, check_number, check_seed, real_number

DRAW_AFTER = " wearing a hat"  # what the default prompt adds to the adapter's phrase: a style the base model knows
Drawn = list[tuple[Image.Image, str]]  # (picture, caption)


@dataclass(frozen=True)
class Subject:
    """What Draw draws: an adapter file on a model, under the name the page shows."""

    adapter: Path
    model: str
    name: str


def uploaded_adapter(path: str | Path, model: object) -> Subject:
    """A dropped ``.safetensors`` adapter, refused in one line (not an adapter, damaged, another tool's LoRA)
    before any model loads; it is drawn on ``model``, as ``lowdim generate -m MODEL -a FILE`` draws it, which is
    refused in one line too (empty, unknown)."""
    path = checked_upload(path)
    return Subject(path, check_model(model), path.name)


def checked_upload(path: str | Path) -> Path:
    """A dropped file as a lowdim adapter, checked on its own as ``lowdim generate -a`` checks it."""
    from lowdim_sd.generate import check_adapter_files

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise LowdimError(f"{path.name} is not an adapter: drop the .safetensors file that lowdim personalize "
                          f"wrote (adapter.safetensors)")
    check_adapter_files([(path, 1.0)])
    return path


def default_prompt(adapter: Path) -> str:
    """The phrase the adapter learned, with the looks read from its photo, then ``DRAW_AFTER``: what the run's
    gallery drew in that style ('a [V] face with ginger long hair wearing a hat'). The file is read as every
    command that takes its token reads it (``read_adapter_file``): a recorded token holding an escape code or a
    line break is one line naming the file, never a prompt filled from it."""
    from lowdim_sd.adapter_info import learned_phrase
    from lowdim_sd.attaching import read_adapter_file

    return learned_phrase(read_adapter_file(adapter).metadata) + DRAW_AFTER


@dataclass(frozen=True)
class DrawSettings:
    """What the Draw row asks for; checked by ``check``, naming each control."""

    prompt: str
    scale: float = 1.0
    seed: int = 0
    steps: int = 30
    count: int = 2
    how: str = "1"  # the short form of `personalize --preview-draw`, e.g. te=0@start=0.3@end=0.8

    def check(self) -> None:
        from lowdim_sd.draw_parts import parse_draw
        from lowdim_sd.prompt_words import IDENTIFIER

        if not isinstance(self.prompt, str) or IDENTIFIER not in self.prompt:  # None: the page's empty box
            raise LowdimError(f"the prompt has no {IDENTIFIER}: write {IDENTIFIER} where the subject goes, "
                              f"e.g. 'a photo of a {IDENTIFIER} face'")
        real_number(self.scale, "Adapter scale")  # any finite number is a weight, as in the CLI
        check_number(self.count, "Pictures", *PICTURES)
        check_number(self.steps, "Draw's denoising steps", *DENOISING_STEPS)
        check_seed(self.seed, "Picture seed", self.count)  # the seed typed; its last picture's must fit too
        parse_draw(self.how or "1")  # here, not only as it draws: a way to draw it cannot read is no job's failure


class Drawer:
    """Draws on one cached base model (loading SD1.5 takes longer than drawing two pictures)."""

    def __init__(self, model_config: str | None, device: str, dtype: str):
        self.model_config, self.device, self.dtype = model_config, device, dtype
        self._cached: tuple[str, object] | None = None

    def draw(self, subject: Subject, settings: DrawSettings) -> Drawn:
        import lowdim
        from lowdim_sd.draw_parts import draw_text, parse_draw
        from lowdim_sd.generate import GenerateConfig, attach_adapters, generate

        settings.check()
        how_scale, parts = parse_draw(settings.how or "1")
        scale = settings.scale * how_scale
        model = self._model(subject.model)
        try:
            tokens = attach_adapters(model, [(subject.adapter, scale)])
            seeds = list(range(settings.seed, settings.seed + settings.count))
            config = GenerateConfig(prompts=[settings.prompt], seeds=seeds, steps=settings.steps, parts=parts)
            with stopping_at_each_step(model.pipe):
                drawn = generate(model, config, tokens)
        finally:
            lowdim.Adapters(model.modules).remove_all()  # the cached model stays the base model
        drawn_as = f"scale {scale:g}" + (f", {draw_text(1.0, parts)}" if not parts.whole else "")
        return [(item.image, f"{item.prompt} (seed {item.seed}, {drawn_as})") for item in drawn]

    def _model(self, name: str):
        from lowdim_sd import runs
        from lowdim_sd.loading import load_sd

        if self._cached is None or self._cached[0] != name:
            self._cached = None  # free the old one first: two SD1.5 copies may not fit
            runs.report("load model", 0, 1)
            self._cached = (name, load_sd(name, self.device, self.dtype, self.model_config))
        return self._cached[1]


@contextmanager
def stopping_at_each_step(pipe) -> Iterator[None]:
    """A stop (Stop, a closed tab, the server's Ctrl-C: ``lowdim_sd.stopping``'s flag) checked before each of the
    UNet's denoising steps: ``generate`` reports, and so hears a stop, only once a call of up to 4 pictures is
    drawn, seconds at 100 steps on a CPU, while every other tab is refused. A pipeline with no torch UNet is
    stopped there only."""
    unet = getattr(pipe, "unet", None)
    hook = getattr(unet, "register_forward_pre_hook", None)
    if hook is None:
        yield
        return
    handle = hook(lambda module, args: stopping.check())
    try:
        yield
    finally:
        handle.remove()
