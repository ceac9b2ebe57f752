"""Bookkeeping of ``lowdim train-hypernet``: data order, the train/val split and metrics (checkpoints:
``lowdim_sd.checkpoints``).

Split from ``lowdim_sd.hypertrain`` to keep each module short; nothing here touches a model's forward.
"""

from __future__ import annotations

import contextlib
import json
import random
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.files import atomic_write
from lowdim.option_words import counted, either
from lowdim_sd import hypertrain_words as words
from lowdim_sd.checked_pictures import file_state
from lowdim_sd.feature_file import StoredFeatures
from lowdim_sd.hypernet_records import run_metadata as run_metadata  # its old home: callers import it here
from lowdim_sd.hypernet_records import warn_about_another_phrase as warn_about_another_phrase
from lowdim_sd.loading import canonical_model
from lowdim_sd.weight_dataset import WeightDataset

if TYPE_CHECKING:
    from lowdim.hyper.encoder import ImageEncoder
    from lowdim_sd.hypertrain import HyperTrainJob


class StepSampler(torch.utils.data.Sampler):
    """Item indices for steps [start, steps): epoch e is a permutation seeded by (seed, e)."""

    def __init__(self, size: int, per_step: int, seed: int, start: int, steps: int) -> None:
        self.size, self.per_step, self.seed, self.start, self.steps = size, per_step, seed, start, steps

    def _permutation(self, epoch: int) -> list[int]:
        return torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch)).tolist()

    def __iter__(self):
        epoch, order = -1, []
        for position in range(self.start * self.per_step, self.steps * self.per_step):
            if position // self.size != epoch:
                epoch = position // self.size
                order = self._permutation(epoch)
            yield order[position % self.size]

    def __len__(self) -> int:
        return (self.steps - self.start) * self.per_step


# A collated batch of ``Pairs``: images, target θ ({layer: {param}}, batched), identity numbers, item numbers.
PairBatch = tuple[Tensor, dict[str, dict[str, Tensor]], Tensor, Tensor]


class Pairs(torch.utils.data.Dataset):
    """WeightDataset items plus the identity's number (which seeds its noise) and the item's index (which
    keys a frozen encoder's cached features)."""

    def __init__(self, dataset: WeightDataset, numbers: dict[str, int]) -> None:
        self.dataset, self.numbers = dataset, numbers

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int):
        try:
            image, weights = self.dataset[item]
        except LowdimError as error:  # read between steps: the run can keep its step before it stops
            raise PairUnreadable(str(error)) from None
        return image, weights, self.numbers[self.dataset.names[self.dataset.identity(item)]], item


class PairUnreadable(LowdimError):
    """A pair (or an --extra-images picture) the run could read when it started and no longer can (its shard
    removed or damaged, its image gone or replaced). Raised while the next batch is read, between two optimizer
    steps, so the step the run is at is whole and worth a checkpoint."""

    def __init__(self, message: str) -> None:
        # A DataLoader worker's error comes back as this type made from the worker's whole traceback, whose
        # last line is "module.PairUnreadable: <the message>": keep the message, one line as it was.
        last = message.strip().splitlines()[-1] if message.strip() else message
        marker = f"{type(self).__name__}: "
        super().__init__(last.split(marker, 1)[1] if "\n" in message.strip() and marker in last else message)


class Images(torch.utils.data.Dataset):
    """Identities without a precomputed θ (the first image of each), for the diffusion term only:
    (image, identity number, item). Read and cropped like the weight data set's images, their crops kept in its
    cache, and held, as those are, to the bytes they had when the run first saw them (``like.checked``: the resume
    check, or this)."""

    NUMBER_OFFSET = 10**7  # their noise seeds never meet those of the weight data set's identities

    def __init__(self, folders: list[Path], like: WeightDataset) -> None:
        from lowdim_sd.precompute import discover_identities

        self.paths = [identity.images[0] for folder in folders for identity in discover_identities(folder)]
        self.like = like
        # Nothing recorded these pictures' bytes before the run: it trains on those it found at its start.
        for path in self.paths:
            like.checked.hold(path)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int):
        path = self.paths[item]
        try:
            image = self._image(path)
        except LowdimError as error:  # read between steps: the run can keep its step before it stops
            raise PairUnreadable(str(error)) from None
        return image, self.NUMBER_OFFSET + item, item

    def _image(self, path: Path) -> Tensor:
        if not self.like.crop:
            return self._read(path)
        # Keyed by what a stat tells of the file as well as its path (taken before the read): a picture edited since
        # its crop was kept is read and cropped anew, and so refused, not trained on from the cache.
        return self.like.crops.crop((path, file_state(path)), partial(self._read, path))

    def _read(self, path: Path) -> Tensor:
        from lowdim_sd.face_inputs import load_face_image

        like = self.like
        image = load_face_image(path, like.resolution, like.crop, like.crop_margin, like.face_index)
        # After the read: a change before or during it shows now; one after it left these pixels right.
        if not like.checked.unchanged(path):
            raise LowdimError(f"{path}: changed since this run started (an extra image: it trains on the picture it "
                              f"found there then); put that picture back to continue, or start a new run to train on "
                              f"this one")
        return image


class FeatureCache:
    """A frozen encoder backbone's features of each item of one data set, computed on first use.

    The encoder sees un-augmented images, so with a frozen backbone its output for an item never
    changes: phase 1 then runs the backbone once per image instead of once per step.
    """

    def __init__(self, stored: StoredFeatures | None = None, name_of: Callable[[int], object] | None = None) -> None:
        self.features: dict[int, Tensor] = {}
        self.stored = stored  # a ``StoredFeatures`` file: every image is looked up there, none computed
        self.name_of = name_of  # item -> its file, so a row the file lacks is named as the user knows it

    def get(self, encoder: ImageEncoder, images: Tensor, items: Tensor) -> Tensor:
        keys = [int(item) for item in items]
        first = {key: j for j, key in reversed(list(enumerate(keys)))}  # an item twice in a batch: encoded once
        missing = [j for key, j in first.items() if key not in self.features]
        if missing:
            with torch.no_grad():  # a file's rows are looked up once per item too: no pixels read back each step
                computed = (self.stored.get(images[missing], self._names([keys[j] for j in missing]))
                            if self.stored is not None else encoder.features(images[missing]))
            for j, value in zip(missing, computed, strict=True):
                self.features[keys[j]] = value.detach()
        return torch.stack([self.features[key] for key in keys])

    def _names(self, items: list[int]) -> list[str] | None:
        return [str(self.name_of(item)) for item in items] if self.name_of is not None else None


def all_targets(dataset: WeightDataset) -> dict[str, dict[str, Tensor]]:
    """Every identity's θ stacked: {layer: {param: (N, *shape)}}."""
    rows = [dataset.weights(number) for number in range(len(dataset.names))]
    return {layer: {k: torch.stack([row[layer][k] for row in rows]) for k in params} for layer, params in
            rows[0].items()}


def check_has_identities(full: WeightDataset) -> None:
    """A weight folder whose index lists nobody (precompute stopped before its first batch, or an index edited
    by hand): said as such, not as a split that leaves nobody to train on."""
    if not full.names:
        shown = ", ".join(str(folder) for folder in full.folders)
        raise LowdimError(f"{shown}: its index lists no identities; precompute some into it first (lowdim "
                          f"precompute -m {full.index.get('model', 'MODEL')} -i IDENTITIES -o {full.folders[0]})")


def split_identities(names: list[str], job: HyperTrainJob, out: Path, people: dict[str, str] | None = None
                     ) -> tuple[list[str], list[str]]:
    """(train, val): a seeded shuffle of people (``people``: identity name -> person; by default each
    identity is its own), all of a person's identities on one side; a resumed run reads out/split.json,
    which ``write_split`` stores once the run is past its checks."""
    path = out / "split.json"
    if job.resume and path.is_file():
        split = read_split(path)
        unknown = sorted(set(split["train"] + split["val"]) - set(names))
        if unknown:
            raise LowdimError(f"{path} names identities the weights lack ({', '.join(unknown[:3])}); "
                              f"resume with the same --weights")
        return split["train"], split["val"]
    count, asked = held_out_count(job, len(names))
    if not 0 <= count < len(names):
        raise LowdimError(f"{asked} gives {count} held-out identities of {len(names)}: at least one must be left "
                          f"to train on")
    val, train = _draw_split(names, people or {}, count, job.seed)
    if not train:
        raise LowdimError(f"{asked} gives {count} held-out identities of {len(names)}, which take every person "
                          f"(identities of the same images in several weight folders are one person): at least one "
                          f"must be left to train on")
    return train, val


def held_out_count(job: HyperTrainJob, identities: int) -> tuple[int, str]:
    """How many identities are held out, and the option that set it as its reader gave it (``--val-fraction
    0.25``): --val-identities as given, else the fraction of the identities rounded, at least one for a fraction
    above 0 (one that rounds to none would turn validation off without a word)."""
    if job.val_identities is not None:
        return job.val_identities, _given("val_identities", job.val_identities)
    count = round(job.val_fraction * identities)
    return (max(count, 1) if job.val_fraction > 0 else 0), _given("val_fraction", job.val_fraction)


def _given(field: str, value: object) -> str:
    """An option with its value as its reader gave it: ``--val-fraction 0.99``, ``HyperTrainJob(val_fraction=0.99)``."""
    return either(f"{words.name(field)} {value}", f"HyperTrainJob({field}={value!r})")


def write_split(out: Path, train: list[str], val: list[str]) -> None:
    """out/split.json, so a resumed run holds out the same identities."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "split.json",
                 lambda temp: Path(temp).write_text(json.dumps({"train": train, "val": val}, indent=1)))


def _draw_split(names: list[str], people: dict[str, str], count: int, seed: int) -> tuple[list[str], list[str]]:
    """Whole people, in a seeded order, go to validation until it holds ``count`` identities or more."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(people.get(name, name), []).append(name)
    order = list(groups.values())  # by each person's first name: the same draw as a shuffle of the names
    random.Random(seed).shuffle(order)
    val: list[str] = []
    for group in order:
        if len(val) >= count:
            break
        val += group
    return sorted(val), sorted(set(names) - set(val))


def read_split(path: Path) -> dict[str, list[str]]:
    """split.json as written by ``split_identities``, or one line naming the file and the way out."""
    try:
        split = json_text.loads(path.read_text())
        lists = [split.get(key) for key in ("train", "val")] if isinstance(split, dict) else [None]
        if all(isinstance(names, list) and all(isinstance(name, str) for name in names) for names in lists):
            return split
        problem = "it is not {\"train\": [names], \"val\": [names]}"
    except (OSError, UnicodeDecodeError, ValueError) as error:
        problem = f"it cannot be read ({error})"
    raise LowdimError(f"{path}: {problem}; delete it to draw the split again (the same --seed draws the same one)")


class MetricsLog:
    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


def last_validation(path: Path | None) -> dict | None:
    """The newest held-out record of ``metrics.jsonl`` (the last validation the run printed), or None."""
    found = list(_validations(path))
    return found[-1] if found else None


def validated(path: Path, step: int) -> bool:
    """Whether ``metrics.jsonl`` holds the held-out record of ``step``."""
    return any(record.get("step") == step for record in _validations(path))


def _validations(path: Path | None) -> Iterator[dict]:
    if path is None or not path.is_file():
        return
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json_text.loads(line)
        except ValueError:  # a line a kill cut short
            continue
        if isinstance(record, dict) and record.get("split") == "val":
            yield record


def trim_metrics(path: Path, start: int) -> None:
    """A resumed run rewrites what came after its checkpoint: keep only records up to ``start``.

    A line a kill cut short (or any line that is not a record) is dropped: the log is a record of the run,
    not its state, and must never stop a resume. The rewrite is atomic, so a kill during it loses nothing."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(errors="replace").splitlines()
            if (step := _step(line)) is not None and step <= start]
    atomic_write(path, lambda temp: Path(temp).write_text("".join(line + "\n" for line in kept)))


def _step(line: str) -> int | None:
    try:
        step = json_text.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


# Options that shape the training itself: a resume must repeat them (the step count, the time budget,
# logging and checkpoint cadence may change, as continuing a run longer needs).
def feature_caches(job: HyperTrainJob, net, train_set: WeightDataset, val_set: WeightDataset | None,
                    extra) -> dict[str, FeatureCache | None]:
    """A frozen encoder's features, cached per image (read from --features where given); none if it trains.
    Each cache can name an item's file, should a --features file lack one mid-run after all."""
    if not getattr(net.config, "freeze_encoder", False):
        return dict.fromkeys(("train", "val", "extra"))
    stored = StoredFeatures(job.features, net.encoder) if job.features is not None else None
    val_path = val_set.image_path if val_set is not None else None
    return {"train": FeatureCache(stored, train_set.image_path), "val": FeatureCache(stored, val_path),
            "extra": FeatureCache(stored, lambda item: extra.dataset.paths[item]) if extra is not None else None}


def encoder_weights_context(job: HyperTrainJob):
    """With --features, a packaged frozen encoder is built without its package (its weights never run);
    not with --key-renders, whose images the model makes on the spot and the backbone must see. The offline
    advice names the encoder in HyperTrainJob's words."""
    from lowdim.hyper.encoder import encoder_words, packaged_weights_unused

    shapes_only = job.features is not None and not job.key_renders
    stack = contextlib.ExitStack()
    # HyperTrainJob takes the encoder in hyper={...}: the offline advice names it so, not as HyperConfig's fields
    stack.enter_context(encoder_words('hyper={{"encoder": "{packaged}"}}', 'hyper={"encoder_config": TINY_ENCODER} '
                                      "(lowdim_sd.hypertrain; the command's --encoder-config tiny)"))
    if shapes_only:
        stack.enter_context(packaged_weights_unused())
    return stack


def extra_images_loader(job: HyperTrainJob, like: WeightDataset, start: int, processes: int):
    """Batches of ``--extra-images`` in their own seeded order (resumes like the pairs), or None."""
    if not job.extra_images:
        return None
    images = Images(list(job.extra_images), like)
    size = job.batch_size if job.extra_batch_size is None else job.extra_batch_size
    sampler = StepSampler(len(images), size * processes, job.seed + 1, start, job.steps)
    return torch.utils.data.DataLoader(images, batch_size=size, sampler=sampler, num_workers=job.num_workers)


def model_to_train(job: HyperTrainJob, full: WeightDataset) -> str:
    """The SD model to train for: the job's, else the weights'. Another with the same layers warns; one with
    other layers is refused (no model could use the file)."""
    index = full.index
    model = canonical_model(job.model or index["model"])
    if model == canonical_model(index["model"]):
        return model
    from lowdim.sizing import layer_specs
    from lowdim_sd.modes import resolve_layers
    from lowdim_sd.registered_models import registered_entry
    from lowdim_sd.skeletons import model_skeleton

    backend = registered_entry(model)  # on the meta device: nothing is loaded
    skeleton = backend.value.skeleton() if backend else model_skeleton(model, job.model_config)
    theirs = layer_specs(skeleton, resolve_layers(index["layer_set"], index["model"]))
    if theirs != list(full.layers):
        given, leave = either(f"--model {model}", f"HyperTrainJob(model={model!r})"), either("--model", "model")
        raise LowdimError(f"{given}: its {index['layer_set']} layers ({len(theirs)}) are not those the weights were "
                          f"made on ({index['model']}, {len(full.layers)}); leave {leave} out, or precompute weights "
                          f"on {model}")
    warnings.warn(f"the weights were made with {index['model']}; training for {model} (same layers)", stacklevel=3)
    return model


def validation_line(step: int, scores: dict) -> str:
    """One validation, as printed above the progress bar: the held-out weight loss against a prediction of
    the training mean (below 1: the image told the network something), and the diffusion loss."""
    against = scores.get("weight_loss_vs_mean")
    mean = f" ({against:.3g}× the training mean's)" if against is not None else ""
    denoise = scores.get("diffusion_loss")
    diffusion = f", diffusion loss {denoise:.4g}" if denoise is not None else ""
    held = len(scores["identities"])
    return (f"step {step}, {counted(held, 'held-out identity', plural='held-out identities')}: weight loss "
            f"{scores['weight_loss']:.4g}{mean}{diffusion}")
