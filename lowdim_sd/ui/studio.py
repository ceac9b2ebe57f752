"""What the web page does, as plain Python: check a photo, show its crop, personalize, reopen, draw, score.

Nothing here imports Gradio. A ``Studio`` serves one ``lowdim ui`` process:

* one job at a time: a second request while one runs is refused at once with ``Busy``, never queued;
* each personalization runs in a hidden ``OUT/.NAME.partial`` folder, renamed to ``OUT/NAME`` only
  when everything is written, so a failure, a closed tab or a killed server never leaves a
  half-written run among the finished ones (and the next start removes the hidden leftovers);
* personalization is ``lowdim_sd.personalize.personalize`` itself, the CLI's code path, with the
  exports every tool reads; its stages and bars reach the page through ``runs.listen``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from lowdim.errors import LowdimError, first_line
from lowdim_sd import runs

MAX_PIXELS = 40_000_000  # a photo beyond this is refused before it is decoded (a 40 MP camera's full frame)
PREVIEW_SIDE = 256  # the crop shown before training; what trains is cut the same way at the model's size
EXPORTS = {"diffusers": "diffusers / peft (load_lora_weights)", "kohya": "kohya (A1111, ComfyUI, Forge)"}
PARTIAL = ".partial"
RUN_FILE = "run.json"


class Busy(LowdimError):
    """Another job of this process is running."""


@dataclass(frozen=True)
class StudioConfig:
    """What ``lowdim ui`` was started with."""

    model: str = "tinyfaces"
    out: Path = Path("lowdim-ui")
    model_config: str | None = None
    device: str = "auto"
    dtype: str = "auto"


@dataclass(frozen=True)
class RunSettings:
    """What the page asks of one personalization; None: the paper's recipe (the CLI's defaults)."""

    model: str
    use_hypernet: bool = True
    steps: int | None = None
    rank: int = 4
    seed: int = 0
    face_index: int | None = None
    crop: bool | None = None  # cut the photo to the aligned face; None: the model's default (as the CLI)
    preview_steps: int = 30


@dataclass
class RunRecord:
    """A finished run as the page shows it, read back from its folder."""

    name: str
    folder: Path
    settings: dict
    stages: dict[str, float]
    gallery: list[tuple[Path, str]] = field(default_factory=list)  # (picture, caption)
    downloads: dict[str, Path] = field(default_factory=dict)  # label -> file
    notes: list[str] = field(default_factory=list)  # what the run warned of, e.g. a preview it had to skip

    @property
    def total_seconds(self) -> float:
        return sum(self.stages.values())


@dataclass
class CropPreview:
    image: Image.Image
    faces: int  # faces found (0 when the model uses photos as they are)
    message: str


# -- the photo ------------------------------------------------------------------------------------
def check_photo(path: str | Path) -> Path:
    """The uploaded file, refused in one line unless it is an image of at most MAX_PIXELS pixels."""
    path = Path(path)
    try:
        with Image.open(path) as image:  # reads the header only: a huge photo is refused before decoding
            width, height = image.size
    except FileNotFoundError:
        raise LowdimError(f"{path.name}: the upload is gone; drop the photo again") from None
    except (Image.UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise LowdimError(f"{path.name} is not an image this page can read ({first_line(error)}); "
                          f"use a JPEG, PNG or WebP photo") from None
    if width * height > MAX_PIXELS:
        raise LowdimError(f"{path.name} is {width}x{height} pixels ({width * height / 1e6:.0f} MP); photos up to "
                          f"{MAX_PIXELS // 1_000_000} MP are accepted: scale it down first")
    return path


def crop_preview(path: str | Path, model: str, face_index: int | None = None,
                 crop: bool | None = None) -> CropPreview:
    """The picture personalization will train on, cut as it will be, and what to tell the user about it."""
    from lowdim_sd.face_inputs import resolve_crop
    from lowdim_sd.images import load_image, to_pil

    path = check_photo(path)
    model = check_model(model)  # the model personalize would use, so the preview is the crop it trains on
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crop = resolve_crop(crop, model)
        if not crop:  # any size shows; the model's own minimum is checked when it trains
            picture = to_pil(load_image(path, PREVIEW_SIDE, min_side=1)[None])[0]
            return CropPreview(picture, 0, _first_note(caught, f"{model} uses the photo as it is (centre square)"))
        from lowdim_sd.faces import crop_face, detect_faces
        from lowdim_sd.images import open_rgb

        photo = open_rgb(path)
        faces = len(detect_faces(photo, path.name))
        with advice_for_the_page():
            picture = crop_face(photo, PREVIEW_SIDE, index=face_index, name=path.name)
    if faces > 1:
        chosen = 0 if face_index is None else face_index
        return CropPreview(picture, faces, f"{faces} faces found: showing face {chosen} (0 is the largest); "
                                           f"pick another with 'Face'")
    return CropPreview(picture, faces, _first_note(caught, "face found and aligned: this crop is what the model "
                                                           "learns"))


@contextmanager
def advice_for_the_page() -> Iterator[None]:
    """A face not found, said with what the page offers (another photo) instead of the CLI's --no-crop."""
    from lowdim_sd.faces import FaceNotFound

    try:
        yield
    except FaceNotFound as error:
        raise FaceNotFound(str(error).replace(", or pass --no-crop to use the image as it is", "")) from None


def _first_note(caught: list, otherwise: str) -> str:
    """The first warning worth showing (a missing extra, a small face), else ``otherwise``."""
    notes = [first_line(w.message) for w in caught if "upscaling" not in str(w.message)]
    return notes[0] if notes else otherwise


def _worth_a_note(caught: warnings.WarningMessage) -> bool:
    """lowdim's own warnings about the run (a skipped preview, say), not libraries' deprecations; and not the
    export format one: both exports are wanted, and the page says which tool reads which."""
    return (caught.category is UserWarning and _top_package(caught.filename).startswith("lowdim")
            and "ComfyUI reads only the kohya format" not in str(caught.message))


def _top_package(filename: str) -> str:
    """'lowdim_sd' for .../lowdim_sd/ui/studio.py, 'diffusers' for .../diffusers/utils/x.py."""
    folder, top = Path(filename).parent, ""
    while (folder / "__init__.py").is_file():
        top, folder = folder.name, folder.parent
    return top


def check_model(model: str) -> str:
    """An installed backend, a folder or file here, or a hub id; anything else is refused by name."""
    from lowdim.registry import get_registry

    model = model.strip()
    names = list(get_registry().backends)
    if model in names or Path(model).expanduser().exists():
        return model
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not model.startswith((".", "/")):
        return model  # a hub id: loading says whether it is reachable
    raise LowdimError(f"model '{model}' is neither an installed model ({', '.join(names)}) nor a folder or file "
                      f"on this machine")


MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit number


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise LowdimError(f"Seed must be a whole number from 0 to {MAX_SEED}, got {seed}")


# -- the runs folder -----------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "photo"


def list_runs(out: Path) -> list[str]:
    """Finished runs in ``out``, newest first (hidden partial folders are not runs)."""
    if not out.is_dir():
        return []
    found = [p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / RUN_FILE).is_file()]
    return sorted((name for name in found if _readable(out, name)), reverse=True)


def _readable(out: Path, name: str) -> bool:
    """A run whose record was damaged after it finished is left out of the list, not shown to fail on Open."""
    try:
        read_run(out, name)
    except LowdimError:
        return False
    return True


def read_run(out: Path, name: str) -> RunRecord:
    folder = out / name
    if name.startswith(".") or "/" in name or not (folder / RUN_FILE).is_file():
        raise LowdimError(f"no finished run '{name}' in {out}")
    try:
        record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        gallery = [(folder / item["file"], item["caption"]) for item in record["gallery"]]
        downloads = {label: folder / file for label, file in record["downloads"].items()}
        return RunRecord(name, folder, record["settings"], record["stages"], gallery, downloads,
                         record.get("notes", []))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise LowdimError(f"run '{name}' in {out}: its {RUN_FILE} is damaged ({type(error).__name__}); "
                          f"its files are still in {folder}") from None


def clean_partials(out: Path) -> list[Path]:
    """Remove the hidden folders of runs that died with an earlier server (their lock is not alive)."""
    removed = []
    for folder in out.glob(f".*{PARTIAL}") if out.is_dir() else []:
        if not runs.folder_in_use(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _new_run_name(out: Path, photo: Path) -> str:
    stamp, stem = time.strftime("%Y%m%d-%H%M%S"), _slug(photo.stem)
    name, number = f"{stamp}-{stem}", 2
    while (out / name).exists() or (out / f".{name}{PARTIAL}").exists():
        name, number = f"{stamp}-{stem}-{number}", number + 1
    return name


# -- the studio ----------------------------------------------------------------------------------
class Studio:
    """One ``lowdim ui`` process: its settings, its one job slot and its cached model for drawing."""

    def __init__(self, config: StudioConfig):
        self.config = config
        self._slot = threading.Lock()
        self._running: tuple[str, float] | None = None
        self._drawing_model: tuple[tuple, object] | None = None
        runs.check_folder_target(config.out, "--out")  # a file there (or above) is one line, not a traceback
        config.out.mkdir(parents=True, exist_ok=True)
        clean_partials(config.out)

    @contextmanager
    def job(self, what: str) -> Iterator[None]:
        """Hold the process's one job slot, or refuse at once saying what holds it."""
        if not self._slot.acquire(blocking=False):
            holder, since = self._running or ("a job", time.monotonic())
            raise Busy(f"{holder} is already running (for {time.monotonic() - since:.0f} s); one job runs at a "
                       f"time: wait for it to finish")
        self._running = (what, time.monotonic())
        try:
            yield
        finally:
            self._running = None
            self._slot.release()

    def personalize(self, photo: str | Path, settings: RunSettings,
                    listener: Callable[[str, int, int], None] | None = None) -> RunRecord:
        """``lowdim personalize`` on the photo, into a new run folder that appears only once complete."""
        photo = check_photo(photo)
        model = check_model(settings.model)
        check_seed(settings.seed)
        with self.job("a personalization"):
            out = self.config.out
            name = _new_run_name(out, photo)
            work = out / f".{name}{PARTIAL}"
            try:
                with runs.listen(listener or (lambda *_: None)), advice_for_the_page():
                    self._personalize_into(work, photo, model, settings)
                work.rename(out / name)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            return read_run(out, name)

    def _personalize_into(self, work: Path, photo: Path, model: str, settings: RunSettings) -> None:
        from lowdim_sd.personalize import PersonalizeJob, personalize

        job = PersonalizeJob(model=model, image=photo, steps=settings.steps, rank=settings.rank, seed=settings.seed,
                             no_hyper=not settings.use_hypernet, face_index=settings.face_index,
                             crop=settings.crop, out=work,
                             export=list(EXPORTS), preview_steps=settings.preview_steps,
                             model_config=self.config.model_config, device=self.config.device,
                             dtype=self.config.dtype)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = personalize(job, progress=False)
        notes = [first_line(w.message) for w in caught if _worth_a_note(w)]
        shutil.copyfile(photo, work / f"photo{photo.suffix.lower()}")
        gallery = []
        (work / "gallery").mkdir()
        for index, (caption, image) in enumerate(result.gallery):
            file = f"gallery/{index:02d}.png"
            image.save(work / file)
            gallery.append({"file": file, "caption": caption})
        downloads = {"lowdim adapter": result.adapter.name,
                     **{label: f"adapter.{fmt}.safetensors" for fmt, label in EXPORTS.items()}}
        record = {"settings": {**asdict(settings), "photo": photo.name}, "stages": result.stages,
                  "gallery": gallery, "downloads": downloads, "notes": notes}
        (work / RUN_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")  # written last: it marks done

    def draw(self, run: str, prompt: str, scale: float = 1.0, seed: int = 0, steps: int = 30,
             count: int = 2, how: str = "1") -> list[tuple[Image.Image, str]]:
        """More pictures of a finished run's subject: ``prompt`` with [V], the adapter at ``scale``, drawn as
        ``how`` says (the short form of `personalize --preview-draw`, e.g. te=0@start=0.3@end=0.8)."""
        from lowdim_sd.draw_parts import draw_text, parse_draw
        from lowdim_sd.generate import IDENTIFIER, GenerateConfig, attach_adapters, generate

        record = read_run(self.config.out, run)
        if IDENTIFIER not in prompt:
            raise LowdimError(f"the prompt has no {IDENTIFIER}: write {IDENTIFIER} where the subject goes, "
                              f"e.g. 'a photo of a {IDENTIFIER} face'")
        if not 1 <= count <= 16:
            raise LowdimError(f"pictures per prompt must be 1 to 16, got {count}")
        check_seed(seed + count - 1)  # the last picture's seed
        how_scale, parts = parse_draw(how or "1")
        scale *= how_scale
        with self.job("a drawing"):
            model = self._model_for_drawing(record.settings["model"])
            import lowdim

            try:
                tokens = attach_adapters(model, [(record.downloads["lowdim adapter"], scale)])
                config = GenerateConfig(prompts=[prompt], seeds=list(range(seed, seed + count)), steps=steps,
                                        parts=parts)
                drawn = generate(model, config, tokens)
            finally:
                lowdim.Adapters(model.modules).remove_all()  # the cached model stays the base model
        drawn_as = f"scale {scale:g}" + (f", {draw_text(1.0, parts)}" if not parts.whole else "")
        return [(item.image, f"{item.prompt} (seed {item.seed}, {drawn_as})") for item in drawn]

    def _model_for_drawing(self, model: str):
        from lowdim_sd.loading import load_sd

        key = (model, self.config.model_config, self.config.device, self.config.dtype)
        if self._drawing_model is None or self._drawing_model[0] != key:
            self._drawing_model = None  # free the old one first: two SD1.5 copies may not fit
            self._drawing_model = (key, load_sd(model, self.config.device, self.config.dtype,
                                                self.config.model_config))
        return self._drawing_model[1]

    def evaluate(self, images: list[str | Path], reference: str | Path, prompt: str, token: str = "sks",
                 metrics: str = "") -> str:
        """``lowdim eval`` on dropped pictures against a reference photo: its report as markdown."""
        from lowdim_sd.eval.job import EvalJob, parse_metric_names, run_eval

        if not images:
            raise LowdimError("drop at least one generated picture to score")
        reference = check_photo(reference)
        names = parse_metric_names(metrics) if metrics.strip() else EvalJob.metrics
        with self.job("a scoring"), tempfile.TemporaryDirectory(prefix="lowdim-eval-") as folder:
            entries = []
            for index, path in enumerate(images):
                path = check_photo(path)
                name = f"{index:03d}{path.suffix.lower()}"
                shutil.copyfile(path, Path(folder) / name)
                entries.append({"image": name, "prompt": prompt})
            (Path(folder) / "prompts.json").write_text(json.dumps({"images": entries, "token": token}))
            report = run_eval(EvalJob(Path(folder), names, (reference,), token, device=self.config.device))
        return report.to_markdown().replace("# lowdim eval\n", "", 1)
