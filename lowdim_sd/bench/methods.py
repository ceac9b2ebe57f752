"""The rows of the paper's Tables 1-3: how each method personalizes a model from one reference image.

Every method runs on a freshly loaded model and leaves it personalized in memory, ready to
generate, and returns the file a user would keep and the wall time of the personalization alone
(model loading and image generation are not counted, for every method alike).
"""

from __future__ import annotations

import math
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.option_words import either
from lowdim_sd.bench.stored_values import printable
from lowdim_sd.draw_parts import DRAW_SYNTAX, DrawParts, describe_draw, parse_draw
from lowdim_sd.loading import SDModel
from lowdim_sd.train import Subject, Trainable, TrainConfig, train


@dataclass(frozen=True)
class Method:
    name: str  # command-line name
    label: str  # table row, as in the paper
    kind: str  # "hyper": our pipeline (personalize.py) | "dreambooth": lowdim train's modes | "ti" | "base"
    steps: int = 0
    learning_rate: float | None = None  # hyper rows: None is personalize's default for the model
    space: str = "lidb"
    rank: int = 4  # LoRA rank of the rank-relaxed finetune (hyper) or of LoRA DreamBooth
    full: bool = False
    use_hypernet: bool = True
    iterations: int | None = None  # hypernetwork refinement steps k; None: the checkpoint's
    layers: str | None = None  # hyper rows: the layer set of the prediction and the finetune (None: the paper's)
    keep_styles: float = 0.0  # hyper rows: personalize --keep-styles
    describe: bool = False  # hyper rows: personalize --describe (the looks in words in every prompt)
    adapter_scale: float = 1.0  # drawn with the file at this scale, as `lowdim generate --adapter FILE:S` does
    parts: DrawParts = DrawParts()  # drawn with its parts apart, as `lowdim generate --text-encoder-scale ...` does
    note: str = ""

    @property
    def drawn_from_file(self) -> bool:
        """Whether the bench draws the written file on a fresh model (a draw setting), not the trained model."""
        return self.adapter_scale != 1.0 or not self.parts.whole


# Learning rates of the DreamBooth rows follow lowdim train's defaults (defaults.LEARNING_RATES), except LiDB
# DreamBooth's, which is the precompute recipe (5e-3 for 400 steps); the aggressive variants raise them as the
# paper does when it cuts the iterations (Table 2).
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ours", "Ours", "hyper", steps=40,
           note="hypernetwork prediction, then 40 steps of rank-relaxed fast finetuning"),
    Method("ours-k1", "Ours (k=1)", "hyper", steps=40, iterations=1,
           note="as Ours, with one hypernetwork iteration instead of the checkpoint's"),
    Method("only-hyper", "Only Hyper", "hyper", steps=0, note="the hypernetwork prediction alone"),
    # The trade the ladder found (docs/ladder.md, rung 11): the text encoder's part of an adapter carries
    # some identity and overwrites the words after [V] ("at night"); without it prompts are followed.
    Method("ours-unet", "Ours (UNet layers)", "hyper", steps=40, layers="unet",
           note="as Ours, with the UNet part of the prediction only and a UNet-only finetune"),
    Method("only-hyper-unet", "Only Hyper (UNet layers)", "hyper", steps=0, layers="unet",
           note="the UNet part of the hypernetwork prediction alone"),
    # The other side of that trade, from the finetune (rung 12f): a loss that keeps what style words add.
    Method("ours-styles", "Ours (keep styles 0.2)", "hyper", steps=40, keep_styles=0.2,
           note="as Ours, with personalize --keep-styles 0.2"),
    # The looks the model's describer reads from the photo, named after "[V] face" in the finetune's style
    # prompts and in every bench prompt, as `lowdim personalize` does by default on tinyfaces.
    Method("ours-described", "Ours (looks in words)", "hyper", steps=40, describe=True,
           note="as Ours, with personalize --describe: the looks read from the photo in every prompt"),
    Method("ours-described-styles", "Ours (looks in words, keep styles 0.05)", "hyper", steps=40, describe=True,
           keep_styles=0.05, note="as Ours, with personalize --describe --keep-styles 0.05"),
    Method("only-hyper-described", "Only Hyper (looks in words)", "hyper", steps=0, describe=True,
           note="the hypernetwork prediction alone, with the looks read from the photo in every prompt"),
    Method("no-hyper", "No Hyper", "hyper", steps=40, use_hypernet=False,
           note="40 steps of rank-relaxed fast finetuning from zero"),
    Method("lidb-db", "LiDB DreamBooth", "dreambooth", steps=400, learning_rate=5e-3, space="lidb",
           note="LiDB trained from zero, the precompute recipe"),
    Method("lora-db", "LoRA DreamBooth", "dreambooth", steps=1000, learning_rate=1e-4, space="lora", rank=4,
           note="LoRA rank 4 on the same layers"),
    Method("dreambooth", "DreamBooth", "dreambooth", steps=1200, learning_rate=5e-6, full=True,
           note="UNet and text encoder, every weight"),
    Method("db-agg-1", "DreamBooth-Agg-1", "dreambooth", steps=400, learning_rate=2e-5, full=True,
           note="400 steps at 4x the learning rate"),
    Method("db-agg-2", "DreamBooth-Agg-2", "dreambooth", steps=40, learning_rate=1e-4, full=True,
           note="40 steps at 20x the learning rate"),
    # The paper's rate: base 5e-3 scaled by its batch (4) and GPUs (2); chosen over the unscaled 5e-3 on
    # validation identities (docs/results.md, "The rows").
    Method("ti", "Textual Inversion", "ti", steps=5000, learning_rate=4e-2, space="ti",
           note="one token vector from 'face', the paper's 5,000 steps at its effective rate 0.04"),
    Method("base", "Base model", "base", note="no personalization: the floor"),
    # The floor once words carry the looks: how much of a face the describer's words alone draw.
    Method("base-described", "Base model (looks in words)", "base", describe=True,
           note="no personalization, the looks read from the photo in every prompt"),
)}


# Rows at any --keep-styles weight, so a user can chart identity against style for their own λ: the row
# named before the weight, with that weight.
WEIGHTED_ROW = re.compile(r"(ours-styles|ours-described-styles)-(\d+(?:\.\d+)?)")
# The draw forms are the parser's own words (DRAW_SYNTAX), so a setting it learns is named here too.
WEIGHTED_NAMES = ("ours-styles-λ, ours-described-styles-λ (any weight λ > 0, e.g. ours-styles-0.05), and any row "
                  f"that writes an adapter file drawn another way, ROW@{DRAW_SYNTAX}, chained with '@' "
                  "(e.g. ours-described@te=0@start=0.3)")
# A row's adapter drawn otherwise: at a lower (or higher) scale, the knob every LoRA user has at generation
# time; and with its parts apart (lowdim_sd.draw_parts).
DRAWN_ROW = re.compile(r"([^@]+)((?:@[^@]+)+)")


def find_method(name: str) -> Method | None:
    """A row by name: one of METHODS, a keep-styles row at weight λ (``ours-styles-λ``,
    ``ours-described-styles-λ``: that row with ``personalize --keep-styles λ``), or a row that writes an
    adapter file, drawn another way: ``ROW@S`` (scale S) or any other setting ``parse_draw`` reads, chained."""
    if name in METHODS:
        return METHODS[name]
    drawn = DRAWN_ROW.fullmatch(name)
    if drawn is not None:
        return _drawn(drawn.group(1), drawn.group(2)[1:], name)
    match = WEIGHTED_ROW.fullmatch(name)
    if match is None or not 0 < float(match.group(2)) < math.inf:
        return None
    row, weight = METHODS[match.group(1)], match.group(2)
    label = re.sub(r"keep styles [\d.]+", f"keep styles {weight}", row.label)
    note = re.sub(r"--keep-styles [\d.]+", f"--keep-styles {weight}", row.note)
    return replace(row, name=name, label=label, keep_styles=float(weight), note=note)


def trained_row(name: str) -> str:
    """The row whose file a row drawn another way draws: 'ours-described' for 'ours-described@te=0'."""
    drawn = DRAWN_ROW.fullmatch(name)
    return name if drawn is None else drawn.group(1)


def _drawn(row_name: str, settings: str, name: str) -> Method | None:
    row = find_method(row_name)
    if row is None or row.kind == "base" or row.full:
        return None  # full DreamBooth writes a whole model, and the base model nothing: no file to draw
    try:
        scale, parts = parse_draw(settings)
    except LowdimError:
        return None
    how = describe_draw(scale, parts)
    label = f"{row.label} at {how}" if parts.whole else f"{row.label}, {how}"
    return replace(row, name=name, label=label, adapter_scale=scale, parts=parts,
                   note=f"{row.note}; drawn with the adapter at {how}")


def get_method(name: str) -> Method:
    found = find_method(name)
    if found is None:
        refuse_fileless_draw(name)
        raise LowdimError(f"unknown method '{printable(name)}'; known: {', '.join(METHODS)}, {WEIGHTED_NAMES}")
    return found


def refuse_fileless_draw(name: str) -> None:
    """A known row asked to be drawn another way when it writes no adapter file: one line saying so, since
    'unknown method' would send the user hunting for a typo in a name they spelled right."""
    drawn = DRAWN_ROW.fullmatch(name)
    row = find_method(drawn.group(1)) if drawn else None
    if row is None or not (row.full or row.kind == "base"):
        return
    what = "writes a whole model" if row.full else "personalizes nothing"
    drawable = [m.name for m in METHODS.values() if not (m.full or m.kind == "base")]
    raise LowdimError(f"method '{printable(name)}': {row.name} ({row.label}) {what}, so it has no adapter file to "
                      f"draw at another setting; the rows that write one: {', '.join(drawable)}")


def method_label(name: str) -> str:
    """The row's heading; a name no longer known (an old results folder) stands for itself."""
    found = find_method(name)
    return found.label if found else name


def parse_methods(text: str) -> list[Method]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if find_method(n) is None]
    for name in unknown:
        refuse_fileless_draw(name)
    if unknown:
        raise LowdimError(f"unknown method(s) {', '.join(map(printable, unknown))}; known: {', '.join(METHODS)}, "
                          f"{WEIGHTED_NAMES}")
    return [get_method(n) for n in names]


@dataclass
class Personalized:
    file: Path | None  # what a user keeps: the adapter file, or the finetuned weights
    bytes: int
    seconds: float
    looks: str = ""  # --describe rows: the words put after "[V] <noun>" in every prompt

    def kept_file(self) -> Path:
        """``file``, of a row that keeps one: every row but the base model's."""
        if self.file is None:
            raise RuntimeError("the base model's row keeps no file")
        return self.file


def personalize_subject(model: SDModel, method: Method, reference: torch.Tensor, work_dir: Path,
                        hypernet: Path | None, token: str = "sks", seed: int = 0) -> Personalized:
    """Personalize ``model`` in place for ``reference`` (3, H, W) in [-1, 1] with ``method``.

    Training keeps no checkpoint on a stop: ``work_dir`` is the bench's, gone with the task, and the bench
    has no --resume (a rerun redoes the task); the bench says what it kept."""
    started = time.perf_counter()
    if method.kind == "base":  # nothing trained; reading the looks is the row's only work, and its time
        looks = _looks(model, reference) if method.describe else ""
        return Personalized(None, 0, time.perf_counter() - started if looks else 0.0, looks)
    looks = ""
    if method.kind == "hyper":
        file, looks = _hyper_pipeline(model, method, reference, work_dir, hypernet, token, seed)
    elif method.kind == "ti":
        file = _textual_inversion(model, method, reference, work_dir, token, seed)
    else:
        file = _dreambooth(model, method, reference, work_dir, token, seed)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    seconds = time.perf_counter() - started
    return Personalized(file, _size(file), seconds, looks)


def model_describer(model: str) -> Callable[[torch.Tensor], str] | None:
    """The registered backend's reader of looks (``describe_subject``), or None when it has none."""
    from lowdim_sd.registered_models import registered_entry

    entry = registered_entry(model)
    return getattr(entry.value, "describe_subject", None) if entry else None


def _looks(model: SDModel, reference: torch.Tensor) -> str:
    """What the model's describer reads from the reference, as the words put after "[V] <noun>"."""
    describer = model_describer(model.name)
    if describer is None:
        raise LowdimError(f"model '{model.name}' has no describer of looks")
    return describer(reference)


def _hyper_pipeline(model: SDModel, method: Method, reference: torch.Tensor, work_dir: Path,
                    hypernet: Path | None, token: str, seed: int) -> tuple[Path, str]:
    from lowdim.hyper.encoder import features_computed_once
    from lowdim_sd.personalize import PersonalizeJob, finetune_config, initial_trainable, predict_initial
    from lowdim_sd.personalize_hypernet import warn_about_a_side_read_after_the_load
    from lowdim_sd.personalize_resolve import described_run, resolve_run

    if method.use_hypernet and hypernet is None:
        raise LowdimError(f"method '{method.name}' needs a trained hypernetwork: pass --hypernet CKPT")
    if method.use_hypernet and hypernet is not None:
        refuse_another_space(hypernet, method)
    # personalize's own run, on a model already loaded: the rows differ from `lowdim personalize` only in
    # what the table needs (fp32 files, so every row's bytes compare; no crop of an already prepared image).
    job = PersonalizeJob(model=model.name, image=Path("-"), space=method.space, layers=method.layers,
                         steps=method.steps, rank=method.rank, learning_rate=method.learning_rate, token=token,
                         seed=seed, out=work_dir, hypernet=hypernet if method.use_hypernet else None,
                         no_hyper=not method.use_hypernet, only_hyper=method.steps == 0,
                         iterations=method.iterations, crop=False, save_dtype="fp32",
                         keep_styles=method.keep_styles, describe=method.describe)
    run = resolve_run(job)
    warn_about_a_side_read_after_the_load(run.hypernet, model.resolution)  # a single file's side, told by the load
    # As personalize: the describer and the hypernetwork read one frozen backbone (TinyFaces': DINOv2) the same way,
    # so it runs once for both, bit for bit what each would compute itself.
    with features_computed_once():
        if run.describer is not None:
            run = described_run(run, run.describer(reference))
        predicted = predict_initial(model, run, reference.to(model.device))
        trainable = initial_trainable(model, run, predicted)
    config = finetune_config(run)
    trained = train(model, [Subject(reference[None], run.seed)], trainable, config, out_dir=work_dir, progress=False,
                    continue_with=None)
    return trained.outputs[0], run.looks


SPACE_LABELS = {"lidb": "LiDB", "lora": "LoRA"}  # as the tables' rows spell them


def refuse_another_space(hypernet: Path, method: Method) -> None:
    """A hypernetwork of another space (or space options) than the row's, refused in the bench's words: its rows
    are set (the paper's LiDB), so no flag of the bench can follow the file, and the way to score it is another
    command. Personalize's own refusal would tell the user to pass --space, which bench quality does not take."""
    import lowdim
    from lowdim.hyper.storage import space_flags
    from lowdim_sd.file_info_parts import read_header

    try:  # the header alone; a file that does not read is named by personalize's own load, next
        metadata = read_header(hypernet).metadata
        space, config = metadata["space"], json_text.loads(metadata["space_config"])
    except (LowdimError, ValueError, KeyError):
        return
    row = lowdim.get_space(method.space)  # the options a row runs with: the space's defaults
    if (space, config) == (row.name, row.config.to_dict()) or not isinstance(config, dict):
        return
    flags = printable(space_flags(space, config))  # a stranger's header: no control character to the terminal
    predicts = f"{printable(space)} adapters" + (f" with other options ({flags})" if space == row.name else "")
    label = SPACE_LABELS.get(method.space, method.space)
    score = either(f"`lowdim personalize {flags} --hypernet {shlex.quote(str(hypernet))}` on each photo, then "
                   f"`lowdim eval` on the pictures generated with its adapters",
                   f"PersonalizeJob(space={space!r}, space_options=..., hypernet=...) on each photo (the options the "
                   f"file records), then run_eval on the pictures drawn with its adapters")
    raise LowdimError(f"{hypernet}: this hypernetwork predicts {predicts}, but bench quality's hypernetwork rows "
                      f"({method.name} among them) are {label}'s with its default options, the paper's, so it cannot "
                      f"score it; score it with {score}")


def check_hypernet_header(model: str, hypernet: Path | None, names: list[str], methods: list[Method]) -> None:
    """No hypernetwork for the rows ``names`` that need one (none given, none shipped); else what each of
    ``methods``' hypernetwork rows would refuse of ``hypernet`` that its header tells (another
    space's in the bench's words, another model's or layer set's in personalize's), before the bench loads its
    model: seconds for the tiny one, minutes and a download for SD1.5, to learn that no row can run. The header
    alone: the tensors (gigabytes with a ViT-H encoder) are read by each row's own load."""
    import lowdim
    from lowdim.file_fit import format_version_problem
    from lowdim.files import read_checked
    from lowdim.hyper.storage import FORMAT, FORMAT_VERSION, HypernetFile, checked_header
    from lowdim_sd.modes import resolve_layers
    from lowdim_sd.personalize_hypernet import check_header_fits

    if hypernet is None:
        raise LowdimError(f"method(s) {', '.join(names)} need a trained hypernetwork: model '{model}' ships none, so "
                          f"pass --hypernet CKPT or leave them out of --methods")
    rows = [method for method in methods if method.kind == "hyper" and method.use_hypernet]
    if not rows:
        return
    _, header = read_checked(Path(hypernet), FORMAT, "hypernetwork", LowdimError, load_tensors=False)
    if problem := format_version_problem(header, "hypernetwork", FORMAT_VERSION):
        raise LowdimError(f"{hypernet}: {problem}")
    file = HypernetFile(Path(hypernet), header, checked_header(header, Path(hypernet)), {})
    for method in rows:
        refuse_another_space(hypernet, method)
        check_header_fits(model, file, lowdim.get_space(method.space), resolve_layers(method.layers, model))


def _dreambooth(model: SDModel, method: Method, reference: torch.Tensor, work_dir: Path,
                token: str, seed: int) -> Path:
    import lowdim
    from lowdim_sd.modes import FullTrainable, adapter_trainable, resolve_layers

    trainable: Trainable
    if method.full:
        trainable = FullTrainable(model, train_text_encoder=True)
    else:
        options = {"rank": method.rank} if method.space == "lora" else {}
        trainable = adapter_trainable(model, lowdim.get_space(method.space, options), resolve_layers(None, model.name),
                                      seed=seed, token=token)
    config = TrainConfig(steps=method.steps, learning_rate=method.learning_rate or 1e-4, token=token, seed=seed)
    # Full DreamBooth's output is the saved pipeline; _size counts its finetuned parts only.
    return train(model, [Subject(reference[None], seed)], trainable, config, out_dir=work_dir,
                 progress=False, continue_with=None).outputs[0]


def _textual_inversion(model: SDModel, method: Method, reference: torch.Tensor, work_dir: Path,
                       token: str, seed: int) -> Path:
    """Gal et al. 2022 on one image: new vectors for [V], the model itself frozen."""
    import lowdim
    from lowdim_sd.textual_inversion import prompt_token, ti_trainable, token_options

    space = lowdim.get_space("ti")
    vectors = token_options(space).vectors
    trainable = ti_trainable(model, space, token=token, seed=seed)
    config = TrainConfig(steps=method.steps, learning_rate=method.learning_rate or 5e-3,
                         token=prompt_token(token, vectors), seed=seed)
    return train(model, [Subject(reference[None], seed)], trainable, config, out_dir=work_dir,
                 progress=False, continue_with=None).outputs[0]


def _size(file: Path | None) -> int:
    if file is None:
        return 0
    if file.is_dir():  # a saved pipeline: count the finetuned parts only (UNet, text encoder)
        parts = [file / "unet", file / "text_encoder"]
        return sum(p.stat().st_size for part in parts if part.is_dir() for p in part.glob("*.safetensors"))
    return file.stat().st_size
