"""Text-to-image with any number of lowdim adapters, each at its own scale; PNGs plus a labelled grid."""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from lowdim.errors import LowdimError
from lowdim.filecheck import printable_name
from lowdim.files import atomic_write
from lowdim.option_words import counted, either, option
from lowdim_sd import notebook_views, runs
from lowdim_sd.attached_files import (  # noqa: F401 (detach_adapters: API, beside attach_adapters)
    AdapterArg,
    detach_adapters,
)
from lowdim_sd.attaching import attach_adapters, check_adapter_files, parse_adapter_arg  # noqa: F401 (API, CLI)
from lowdim_sd.draw_parts import DrawParts, check_parts, drawing_parts
from lowdim_sd.drawing_record import drawing_record, drawn_tag, identifier, replaced_of_other_settings
from lowdim_sd.finite_latents import NaNPicture, checking_final_latents
from lowdim_sd.generate_job import GenerateJob, GenerateResult, generate_to_folder  # noqa: F401 (API)
from lowdim_sd.job_fields import SeedsField, WordsField, job_dataclass, seeds_field, words_field
from lowdim_sd.loading import SDModel
from lowdim_sd.pipe_state import own_bar_silenced, refuse_without_weights
from lowdim_sd.prompt_words import (  # noqa: F401 (API)
    IDENTIFIER,
    fill,
    token_warnings,
    unnamed_subject_lines,
    with_looks,
)
from lowdim_sd.schedulers import SCHEDULERS, check_scheduler, scheduled, set_scheduler  # noqa: F401 (API)

# What help() and a star import show (attach_adapters lives in attaching, detach_adapters in attached_files);
# generate_to_folder(GenerateJob) is the command's whole sequence (generate_job); the check_* and record helpers
# it calls are still importable by name.
__all__ = ["SCHEDULERS", "DrawParts", "GenerateConfig", "GenerateJob", "GenerateResult", "Generated",
           "attach_adapters", "detach_adapters", "draw_to_folder", "generate", "generate_to_folder"]

# The label of generate's bar, which counts pictures, not denoising steps: the web page says "pictures" for it.
PICTURES_BAR = "generating"


@job_dataclass
class GenerateConfig:
    """What ``generate`` draws, and how: one picture per (prompt, seed), prompts outermost.

    prompts: the texts to draw; ``[V]`` in one stands for the subject's word (see ``token``). A bare str is
        one prompt.
    seeds: one picture of each prompt per seed, each from its own generator, so a picture is the same however
        many are drawn with it. A bare int is one seed.
    steps: denoising steps per picture (the pndm scheduler needs 4 at least).
    guidance: classifier-free guidance scale; 1 or less draws without guidance (one UNet pass a step, not two),
        5 to 7.5 is usual.
    negative_prompt: what to steer away from ("blurry"); ``[V]`` is filled here too. Empty: none.
    scheduler: the sampler, one of ``SCHEDULERS`` (ddim, dpm++, euler, euler-a, pndm, ddpm); the pipeline's
        own is put back after the call.
    token: the word ``[V]`` becomes: one word, or the token an attached adapter records as it is (spaces and
        all). None: the first attached adapter's word (``attach_adapters`` returns them; pass them as
        ``generate``'s ``tokens``), else the first a merged model was taught, else 'sks'.
    resolution: the picture's side in pixels, a multiple of 8. None: the model's own.
    parts: how the adapters' parts draw (``DrawParts``): their text-encoder part at its own scale, their UNet
        part joining late or leaving early. The default draws them whole, as every loader does.
    batch: pictures drawn together in one pipeline call; a call the GPU has no memory for is halved.
    """

    # One prompt or seed given bare is one (a str is never meant as its characters, a picture each), read back as
    # a list, as is any other sequence (a tuple, a range): every path that reads the config (records, notes) sees
    # lists. What is neither is left for check_config.
    prompts: WordsField = words_field()
    seeds: SeedsField = seeds_field(default=(0,))
    steps: int = 30
    guidance: float = 5.0
    negative_prompt: str = ""
    scheduler: str = "ddim"
    token: str | None = None
    resolution: int | None = None
    parts: DrawParts = DrawParts()
    # Images drawn together in one pipeline call (each from its own seed's generator, so each is the image it
    # would be alone): 3x faster on a CPU for 6 prompts, and a GPU's host-bound UNet calls are shared. 4, since
    # guidance doubles the batch and an 8 GB GPU must still hold a 512 px call (one that does not is halved).
    batch: int = 4


@dataclass
class Generated:
    """One picture ``generate`` drew: ``prompt`` as given (``[V]`` not yet filled, as prompts.json records it),
    the ``seed`` of its generator (the same prompt, seed and settings draw it again), and the PIL ``image``."""

    prompt: str
    seed: int
    image: Image.Image

    def __repr__(self) -> str:  # a notebook's line: no PIL object address
        return notebook_views.generated_repr(self)

    def _repr_png_(self) -> bytes | None:  # a notebook shows the picture itself
        return notebook_views.png_bytes(self.image)


# PNDM's Runge-Kutta warm-up takes its first steps in fours: fewer fail inside diffusers.
MIN_STEPS = {"pndm": 4}


def warn_slow_precision(sd: SDModel) -> None:
    """fp16 weights on a CPU draw correctly but slowly (no fast kernels there): say so once, not refuse."""
    if sd.device.type == "cpu" and sd.dtype == torch.float16:
        auto = either("--dtype auto", "load_sd(dtype='auto')")
        warnings.warn(f"fp16 on a CPU draws about three times slower than fp32, which {auto} picks there",
                      stacklevel=2)


def check_config(config: GenerateConfig, recorded: Sequence[str] = (), taught: Sequence[str] = ()) -> None:
    """Refuse settings diffusers would fail on halfway (or silently draw noise with). ``recorded``: the tokens the
    adapter files drawn with record (``attach_adapters`` returns them); ``taught``: those the merged model drawn
    with was taught (``SDModel.taught``, ``taught_tokens.merged_tokens``). ``token`` may repeat either as it is."""
    for name, kind, example in (("prompts", str, "['a face at night']"), ("seeds", numbers.Integral, "[0, 1]")):
        value = getattr(config, name)
        if not isinstance(value, (list, tuple)) or any(not isinstance(v, kind) or isinstance(v, bool) for v in value):
            raise LowdimError(f"{name} must be a list of {'texts' if kind is str else 'integers'}, e.g. "
                              f"{name}={example}; got {value!r:.80}")
    check_scheduler(config.scheduler)
    if config.token is not None:
        check_token_given(config.token, recorded, taught)
    check_resolution(config.resolution, "GenerateConfig")
    check_parts(config.parts)
    least = MIN_STEPS.get(config.scheduler, 1)
    if config.steps < least:
        raise LowdimError(f"{option('steps', 'GenerateConfig')} must be at least {least} with the "
                          f"{config.scheduler} scheduler, got {config.steps}")
    guidance = option("guidance", "GenerateConfig")
    if not math.isfinite(config.guidance):
        raise LowdimError(f"{guidance} must be a finite number, got {config.guidance}")
    if config.guidance < 0:  # diffusers draws it as no guidance at all, without a word
        raise LowdimError(f"{guidance} must be 0 or more (1 or less draws without classifier-free guidance; 5 to 7.5 "
                          f"is usual), got {config.guidance:g}")
    if config.batch < 1:
        raise LowdimError(f"{option('batch', 'GenerateConfig')} must be at least 1, got {config.batch}")


def check_token_given(token: str, recorded: Sequence[str] = (), taught: Sequence[str] = ()) -> None:
    """``--token`` is one word, as train's: it is pasted for [V] into every prompt and the record. The word an adapter
    file drawn with records (``recorded``), or a merged model drawn with was taught (``taught``), is taken as it is,
    spaces and all: ``lowdim.save_adapter(token="sks person")`` writes such a file, which draws with its own word
    when --token is left out (as a model merged from it does), so a user who names that word is not refused. Its
    characters must still print (a file's word is checked so when it is read, a merged model's when its record is)."""
    from lowdim_sd.personalize_checks import check_token

    if isinstance(token, str) and token.isprintable() and token in [word for word in (*recorded, *taught) if word]:
        return
    if isinstance(token, str) and token.isprintable() and token == token.strip() and len(token.split()) > 1:
        learned = _listed_words(recorded)
        files = (either(f"the -a files record {learned}", f"the attached adapters record {learned}") if learned
                 else either("no -a file records a token", "no attached adapter records a token"))
        # a plain model's line is as it was; a merged model's also names the words it was taught
        model = _listed_words(taught)
        whose = "an adapter file records or the merged model was taught" if model else "an adapter file records"
        raise LowdimError(f"{option('token', 'GenerateConfig')} must be one word, the rare word that [V] stands for; "
                          f"got {printable_name(token, 60)} ({len(token.split())} words), which only the token "
                          f"{whose} may be, and {files}" + (f"; the merged model was taught {model}" if model else ""))
    check_token(token, "the first adapter's own word, else sks", "GenerateConfig")


def _listed_words(words: Sequence[str]) -> str:
    """The words, each once and quoted as a line shows them, for a refusal to list ('' for none)."""
    return ", ".join(printable_name(word, 60) for word in dict.fromkeys(word for word in words if word))


def check_resolution(resolution: int | None, owner: str | None = None) -> None:
    """A side SD can draw and train at: whole latent pixels (the VAE downsamples by 8 in every SD 1.x).
    ``owner``: the class whose ``resolution`` a Python caller set (None: the bare word ``resolution``)."""
    if resolution is not None and (resolution < 8 or resolution % 8):
        named = option("resolution", owner) if owner else either("--resolution", "resolution")
        raise LowdimError(f"{named} must be a positive multiple of 8, got {resolution}")


def warn_about_tokens(config: GenerateConfig, tokens: Sequence[str], taught: Sequence[str] | None = None) -> None:
    becomes = identifier(config, tokens, taught)
    for line in [*token_warnings(config.prompts, tokens, config.token, taught),
                 *unnamed_subject_lines(config.prompts, tokens, becomes)]:
        warnings.warn(line, stacklevel=2)


@torch.no_grad()
def generate(model: SDModel, config: GenerateConfig, tokens: list[str] | None = None,
             progress: bool = False, keep: list[Generated] | None = None, *,
             _bar: tuple[int, int] | None = None) -> list[Generated]:
    """One image per (prompt, seed), prompts outermost; [V] is replaced by the identifier token.

    ``progress``: lowdim's bar of pictures drawn, on stderr and on a terminal only. The pipeline's own diffusers
    bar is off for the call either way, and its setting put back after. ``keep``, when given, is the list the
    pictures are appended to as they are drawn (and returned), so a caller still holds them when a stop
    interrupts the call.
    """
    # ``_bar`` is the preview's alone (preview.py), not API: (pictures drawn before this call, pictures in all), so
    # its rows' pictures go on one bar that never runs back to 0; None: a bar of its own.
    check_config(config, tokens or (), model.taught or ())  # a merged model's own word is taken as a file's is
    refuse_without_weights(model.pipe, model.name)
    with model.one_run(), scheduled(model, config.scheduler), own_bar_silenced(model.pipe):
        return _generate(model, config, tokens, progress, keep, _bar)


def _generate(model: SDModel, config: GenerateConfig, tokens: list[str] | None, progress: bool,
              keep: list[Generated] | None, bar: tuple[int, int] | None) -> list[Generated]:
    token = identifier(config, tokens, model.taught)
    jobs = [(prompt, seed) for prompt in config.prompts for seed in config.seeds]
    size = config.resolution or model.resolution
    results = keep if keep is not None else []
    negative = fill(config.negative_prompt, token)

    def draw(chunk: list[tuple[str, int]]) -> list:
        with drawing_parts(model, config.parts, config.steps) as callback, _decoding_apart(model.pipe.vae):
            return model.pipe(
                [fill(prompt, token) for prompt, _ in chunk],
                negative_prompt=[negative] * len(chunk) if negative else None,
                generator=[torch.Generator(device="cpu").manual_seed(seed) for _, seed in chunk],
                num_inference_steps=config.steps, guidance_scale=config.guidance,
                height=size, width=size, callback_on_step_end=checking_final_latents(model, chunk, callback),
            ).images

    before, total = bar or (0, len(jobs))
    with runs.progress(total, PICTURES_BAR, start=before, enabled=progress, loss=False, transient=True) as advance:
        for chunk, images in _drawn_in_chunks(jobs, config.batch, draw):
            results += [Generated(prompt, seed, image) for (prompt, seed), image in zip(chunk, images, strict=True)]
            advance(steps=len(chunk))
    return results


def _drawn_in_chunks(jobs: list, batch: int, draw: Callable[[list], list]) -> Iterator[tuple[list, list]]:
    """(chunk, its pictures) of at most ``batch`` jobs a call; a call the GPU has no memory for is drawn
    again with half as many, and so are the rest. Each picture comes from its own seed's generator, so a
    picture is the same whatever shares its call. Out of memory at one a call is the caller's to report."""
    start = 0
    while start < len(jobs):
        chunk = jobs[start:start + batch]
        try:
            images = draw(chunk)
        except torch.OutOfMemoryError:
            if len(chunk) == 1:
                raise
            images = None  # leaving the handler frees the failed call's tensors before the next try
        if images is None:
            batch = len(chunk) // 2
            warnings.warn(f"out of memory drawing {len(chunk)} pictures a call; drawing {batch} a call from here "
                          f"({either(f'`lowdim generate --batch {batch}`', f'GenerateConfig(batch={batch})')} "
                          f"starts there)", stacklevel=3)
            torch.cuda.empty_cache()  # a no-op where CUDA never started
            continue
        yield chunk, images
        start += len(chunk)


def draw_to_folder(model: SDModel, config: GenerateConfig, out_dir: str | os.PathLike, tokens: list[str] | None = None,
                   progress: bool = False, adapters: Sequence[AdapterArg] = ()) -> tuple[list[Path], Path]:
    """``generate``, then ``save_generated`` with how they were drawn (``adapters``: the files attached, as
    given, with their scales; none: every adapter on the model); a stop (Ctrl-C, out of memory at one picture
    a call, a picture that comes out NaN) first saves the pictures drawn so far, and says so in its line."""
    out_dir = Path(out_dir)  # before drawing: a folder refused after it would lose every picture
    drawn: list[Generated] = []
    record = drawing_record(model, config, adapters, tokens)
    try:
        generate(model, config, tokens, progress, keep=drawn)
    except NaNPicture as nan:  # the same settings would overflow again: no rerun advice, but what is drawn stays
        count, where = _save_before_stop(drawn, out_dir, config, record)
        raise (NaNPicture(f"{nan}; the {count} drawn before it are in {where}") if drawn else nan) from None
    except (KeyboardInterrupt, torch.OutOfMemoryError) as stop:
        why, (count, where) = runs.stop_word(stop), _save_before_stop(drawn, out_dir, config, record)
        runs.reraise(stop, f"{why} after {count}; the pictures drawn are in {where}; rerun to draw them all"
                           if drawn else f"{why} before the first picture; nothing was written")
    return save_generated(drawn, out_dir, ncol=len(config.seeds), settings=record)


def _save_before_stop(drawn: list[Generated], out_dir: Path, config: GenerateConfig,
                      record: dict) -> tuple[str, str]:
    """Save the pictures a stopped ``draw_to_folder`` drew (none: nothing is written); returns how many of all
    ('2 of 6 pictures') and where they are, for the stop's line."""
    if not drawn:
        return "", ""
    _, grid = save_generated(drawn, out_dir, ncol=len(config.seeds), settings=record)
    return (f"{len(drawn)} of {len(config.prompts) * len(config.seeds)} pictures",
            f"{out_dir} ({grid.name}, prompts.json)")


@contextmanager
def _decoding_apart(vae) -> Iterator[None]:
    """The VAE decodes a call's pictures one at a time: at 512 px its decoder's activations, not the UNet's,
    are what drawing several pictures together adds to a small GPU's peak, and the UNet is what sharing
    a call speeds up."""
    if not hasattr(vae, "use_slicing"):
        yield
        return
    before, vae.use_slicing = vae.use_slicing, True
    try:
        yield
    finally:
        vae.use_slicing = before


def save_generated(results: list[Generated], out_dir: Path, ncol: int | None = None,
                   settings: dict | None = None) -> tuple[list[Path], Path]:
    """PNGs named by prompt and seed, grid.png with each prompt under its picture, and prompts.json (with
    ``settings``, how they were drawn: see ``drawing_record``)."""
    from lowdim_sd.grid import save_grid
    from lowdim_sd.images import save_png

    out_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{index:03d}-{_slug(item.prompt)}-seed{item.seed}.png" for index, item in enumerate(results)]
    replaced = replaced_of_other_settings(out_dir, names, settings)  # before prompts.json is rewritten
    paths = [save_png(item.image, out_dir / name) for item, name in zip(results, names, strict=True)]
    # prompts.json makes the folder an eval folder: `lowdim eval OUT --references face.jpg` (docs/eval.md).
    entries = [{"image": path.name, "prompt": item.prompt, "seed": item.seed}
               for path, item in zip(paths, results, strict=True)]
    # The settings sit beside the images in the one file `lowdim eval` reads (which passes over keys it does
    # not know), so they are written in the same atomic step and cannot describe another run's pictures.
    record = {"images": entries, **({"settings": settings} if settings is not None else {})}
    text = json.dumps(record, indent=1) + "\n"
    atomic_write(out_dir / "prompts.json", lambda temp: Path(temp).write_text(text, encoding="utf-8"))
    tag = drawn_tag(settings or {})
    captions = [f"{item.prompt} (seed {item.seed}{', ' + tag if tag else ''})" for item in results]
    grid = save_grid(out_dir / "grid.png", [item.image for item in results], captions, ncol=ncol)
    older = sorted(set(out_dir.glob("*.png")) - {*paths, grid})
    if older:  # an earlier run's pictures: prompts.json and the grid hold this run's only
        warnings.warn(f"{out_dir} also holds {counted(len(older), 'picture')} of an earlier run (e.g. "
                      f"{older[0].name}), left as they were; prompts.json and grid.png list this run's only",
                      stacklevel=2)
    if replaced:  # by design (a rerun redraws its own), but a sweep into one -o would keep its last run only
        keep = either("give each run its own -o", "give each call its own out_dir")
        warnings.warn(f"{out_dir}: replaced {counted(replaced[0], 'picture')} drawn with other settings "
                      f"({replaced[1]}): {keep} to keep both", stacklevel=2)
    return paths, grid


def _slug(prompt: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in prompt.lower()).strip("-")[:60]
