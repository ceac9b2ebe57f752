"""The personalize path stage by stage, the DreamBooth runs and batched precompute, for ``lowdim bench speed``.

Each ``measure_*`` takes the run's ``SpeedContext`` and returns ``{measurement id: record}``. They
call the code users run (``load_sd``, ``load_face_image``, the hypernetwork, ``relax_rank``,
``train``, ``generate``), so a slowdown anywhere in it shows up here.
"""

from __future__ import annotations

import gc
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import lowdim
from lowdim_sd import defaults
from lowdim_sd.architecture import LAYER_SETS
from lowdim_sd.bench.speed_setup import ENCODERS, Scale, Settings
from lowdim_sd.bench.speed_timing import Clock, peak_memory, record, side_by_side, skipped, time_calls
from lowdim_sd.loading import SDModel, load_sd

if TYPE_CHECKING:
    from lowdim.hyper import HyperNetwork
    from lowdim_sd.modes import AdapterTrainable
    from lowdim_sd.train import Trainable

LAYERS = LAYER_SETS["unet+text"]  # the paper's layer set, personalize's default
PROMPT = "a [V] face"


@dataclass
class SpeedContext:
    """One run's settings and what its measurements share: the loaded model, the hypernetwork, the photo."""

    settings: Settings
    scale: Scale
    model_dir: Path
    photo: Path | None
    photo_note: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    _model: SDModel | None = None
    _hypernet: HyperNetwork | None = None
    _prediction: dict | None = None

    @property
    def device(self) -> torch.device:
        return torch.device(self.settings.device)

    def model(self, dtype: str | None = None) -> SDModel:
        """The model with no adapter on it, loaded (untimed) when none is, or when another dtype is asked for."""
        wanted = dtype or self.settings.dtype
        if self._model is not None and self._model.dtype != _TORCH_DTYPES[wanted]:
            self.drop_model()
        if self._model is None:
            self._model = load_sd(str(self.model_dir), self.settings.device, wanted)
        lowdim.Adapters(self._model.modules).remove_all()
        return self._model

    def keep_model(self, model: SDModel) -> None:
        self._model = model

    def drop_model(self) -> None:
        """Forget the model (its weights were trained, or memory is needed): the next ``model()`` reloads."""
        self._model = None
        gc.collect()  # module graphs can hold cycles: free the weights now, before the next model loads
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def reference(self) -> torch.Tensor:
        """The subject's picture (3, side, side) in [-1, 1]: the photo uncropped, or fixed noise without one."""
        side = self.settings.resolution
        if self.photo is not None:
            from lowdim_sd.images import load_image

            return load_image(self.photo, side)
        return torch.rand(3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def hypernet(self) -> HyperNetwork:
        """A hypernetwork of the paper's architecture (scale's ViT encoder) for this model's layers, on the device."""
        if self._hypernet is None:
            from lowdim.hyper import HyperConfig, HyperNetwork
            from lowdim.sizing import layer_specs

            torch.manual_seed(0)
            config = HyperConfig(encoder=f"random {self.scale.encoder}", encoder_config=ENCODERS[self.scale.encoder])
            net = HyperNetwork(config, lowdim.get_space("lidb"), layer_specs(self.model().modules, LAYERS))
            self._hypernet = net.to(self.device, _TORCH_DTYPES[self.settings.dtype]).eval()
        return self._hypernet

    def prediction(self) -> dict:
        """The hypernetwork's k = 4 prediction for the reference, computed once."""
        if self._prediction is None:
            with torch.no_grad():
                self._prediction = self.hypernet()(self.image(), iterations=4)
        return self._prediction

    def image(self) -> torch.Tensor:
        """The reference as the hypernetwork takes it: a batch of one, on the device, in the run's dtype."""
        return self.reference()[None].to(self.device, _TORCH_DTYPES[self.settings.dtype])

    def drop_hypernet(self) -> None:
        self._hypernet = None

    def label(self, key: str) -> str:
        return self.labels.get(key, key)


_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# ---------------------------------------------------------------------------------------- personalize


def measure_load(ctx: SpeedContext) -> dict:
    ctx.drop_model()
    clock = Clock(ctx.device)
    with clock.timed():
        model = load_sd(str(ctx.model_dir), ctx.settings.device, ctx.settings.dtype)
    ctx.keep_model(model)
    return {"load": record(ctx.label("load"), clock.samples)}


def measure_crop(ctx: SpeedContext) -> dict:
    from lowdim_sd.face_inputs import load_face_image
    from lowdim_sd.faces import INSTALL_HINT, faces_available

    if ctx.photo is None:
        return {"crop": skipped(ctx.label("crop"), ctx.photo_note)}
    if not faces_available():
        return {"crop": skipped(ctx.label("crop"), f"no face detector: {INSTALL_HINT}")}
    side, photo = ctx.settings.resolution, ctx.photo
    samples = time_calls(lambda: load_face_image(photo, side, crop=True), torch.device("cpu"),
                         ctx.settings.repeats, ctx.scale.warmup)
    return {"crop": record(ctx.label("crop"), samples, photo=ctx.photo_note)}


def measure_hypernet(ctx: SpeedContext) -> dict:
    net, image = ctx.hypernet(), ctx.image()

    def iterations(k: int):
        def call() -> None:
            with torch.no_grad():
                net(image, iterations=k)

        return lambda: (call, lambda: None)

    samples = side_by_side({"hyper_k1": iterations(1), "hyper_k4": iterations(4)}, ctx.device, ctx.scale.rounds,
                           ctx.settings.repeats, ctx.scale.warmup)
    encoder = sum(p.numel() for p in net.encoder.parameters())
    total = sum(p.numel() for p in net.parameters())
    return {key: record(ctx.label(key), values, encoder_params=encoder, hypernet_params=total,
                        predicted_numbers=net.num_predicted(), layers=len(net.layers))
            for key, values in samples.items()}


def relaxed_start(model: SDModel, prediction: dict | None = None) -> AdapterTrainable:
    """What personalize does with a prediction: a LiDB holding it (without one, its initial values), merged,
    plus a trainable LoRA r=4."""
    from lowdim_sd.modes import relaxed_trainable

    adapters = lowdim.Adapters(model.modules)
    adapters.add("initial", lowdim.get_space("lidb"), LAYERS, seed=0)
    if prediction is not None:
        adapters.load_tensors("initial", {layer: {key: value[0] for key, value in params.items()}
                                          for layer, params in prediction.items()})
    return relaxed_trainable(model, "initial", rank=4, seed=0, metadata={"base_model": "bench", "token": "sks"})


def measure_merge(ctx: SpeedContext) -> dict:
    prediction, clock = ctx.prediction(), Clock(ctx.device)
    for index in range(ctx.scale.warmup + ctx.settings.repeats):
        model = ctx.model()  # removes (and so unmerges) the previous repeat's adapters, untimed
        if index < ctx.scale.warmup:
            relaxed_start(model, prediction)
            continue
        with clock.timed():
            relaxed_start(model, prediction)
    return {"merge": record(ctx.label("merge"), clock.samples)}


def train_run(ctx: SpeedContext, model: SDModel, trainable: Trainable, steps: int, learning_rate: float,
              subjects: int = 1, mixed_precision: str = "no", checkpointing: bool = False, cuda_graphs: bool = False,
              losses: list | None = None) -> float:
    """Seconds of one run of the training engine (``train``), as personalize, train and precompute call it;
    the run's losses go to ``losses`` when given."""
    from lowdim_sd.train import Subject, TrainConfig, train

    reference = ctx.reference()[None]
    config = TrainConfig(steps=steps, learning_rate=learning_rate, seed=0, mixed_precision=mixed_precision,
                         gradient_checkpointing=checkpointing, cuda_graphs=cuda_graphs)
    clock = Clock(ctx.device)
    with clock.timed():
        result = train(model, [Subject(reference, seed) for seed in range(subjects)], trainable, config,
                       progress=False)
    if losses is not None:
        losses.extend(result.losses)
    return clock.samples[0]


def train_seconds(ctx: SpeedContext, model: SDModel, trainable: Trainable, steps: int, learning_rate: float,
                  **options: Any) -> list[float]:
    """A timed run after an untimed one of ``scale.warmup`` steps: the first run in a process also pays for
    the GPU's one-time set-up (kernel selection, allocator growth), which ``measure_finetune`` reports apart,
    and must not land on whichever run happens to come first."""
    if ctx.scale.warmup:
        train_run(ctx, model, trainable, ctx.scale.warmup, learning_rate, **options)
    return [train_run(ctx, model, trainable, steps, learning_rate, **options)]


def measure_finetune(ctx: SpeedContext) -> dict:
    """The 40 steps warm, and apart from them what a process's first training run pays once: its first
    ``warmup`` steps' time beyond what warm steps take (a CLI user's personalize pays it every time)."""
    model = ctx.model()
    trainable = relaxed_start(model, ctx.prediction())
    steps, warm = ctx.scale.finetune_steps, max(ctx.scale.warmup, 1)
    first = train_run(ctx, model, trainable, warm, defaults.FINETUNE_LR)
    timed = train_run(ctx, model, trainable, steps, defaults.FINETUNE_LR)
    set_up = max(first - warm * timed / steps, 0.0)
    return {"finetune": record(ctx.label("finetune"), [timed], steps=steps),
            "warmup": record(ctx.label("warmup"), [set_up], first_run_seconds=first, first_run_steps=warm)}


GRAPHS_CHECK_STEPS = 4
GRAPHS_TOLERANCE = 1e-2  # relative loss difference: fp16 kernels may differ in order, a wrong graph far more


def measure_finetune_graphs(ctx: SpeedContext) -> dict:
    """The 40 steps with the models replayed from CUDA graphs (``--cuda-graphs``), after the eager ``finetune``
    task has paid the process's set-up. Timed as personalize runs it: one ``train`` call, its capture
    included. First the same few steps from the same start, eager and graphed: a graph that computes
    something else is reported as such, never as a time."""
    label = ctx.label("finetune_graphs")
    if ctx.device.type != "cuda":
        return {"finetune_graphs": skipped(label, "CUDA graphs need a CUDA GPU", retry=False)}
    runs: dict[bool, list[float]] = {}  # each run's losses, by whether it replays CUDA graphs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for graphs in (False, True):
            model, runs[graphs] = ctx.model(), []
            train_run(ctx, model, relaxed_start(model, ctx.prediction()), GRAPHS_CHECK_STEPS,
                      defaults.FINETUNE_LR, cuda_graphs=graphs, losses=runs[graphs])
    fallbacks = [str(w.message) for w in caught if str(w.message).startswith("--cuda-graphs")]
    if fallbacks:  # a model that ran eagerly would pass for a graphed one
        return {"finetune_graphs": skipped(label, "; ".join(fallbacks))}
    difference = max(abs(a - b) / max(abs(a), 1e-8) for a, b in zip(runs[False], runs[True], strict=True))
    if difference > GRAPHS_TOLERANCE:
        return {"finetune_graphs": skipped(label, f"graphed losses differ from eager by {difference:.1%}")}
    model = ctx.model()
    trainable = relaxed_start(model, ctx.prediction())
    steps = ctx.scale.finetune_steps
    seconds = train_run(ctx, model, trainable, steps, defaults.FINETUNE_LR, cuda_graphs=True)
    return {"finetune_graphs": record(label, [seconds], steps=steps, loss_difference=difference)}


def measure_memory(ctx: SpeedContext) -> dict:
    """Peak memory of personalize's path (prediction k=4, merge, a few finetune steps), without and with
    gradient checkpointing; each record's seconds are its steps' (what checkpointing costs in time)."""
    found = {}
    # Checkpointing first: memory the allocator keeps after the larger run would hide the smaller peak.
    for key, checkpointing in (("memory_gc", True), ("memory", False)):
        model = ctx.model()
        with peak_memory(ctx.device) as peak:
            with torch.no_grad():
                prediction = ctx.hypernet()(ctx.image(), iterations=4)
            trainable = relaxed_start(model, prediction)
            samples = train_seconds(ctx, model, trainable, ctx.scale.memory_steps, defaults.FINETUNE_LR,
                                    checkpointing=checkpointing)
        if peak.bytes is None:
            found[key] = skipped(ctx.label(key), f"no way to read peak memory on {ctx.device} here")
            continue
        found[key] = {**record(ctx.label(key), samples, peak_of=peak.kind, steps=ctx.scale.memory_steps,
                               gradient_checkpointing=checkpointing), "peak_bytes": peak.bytes}
    return found


def measure_generate(ctx: SpeedContext) -> dict:
    """One image with the rank-relaxed adapter attached, as personalize's preview draws each prompt."""
    from lowdim_sd.generate import GenerateConfig, generate

    model = ctx.model()
    relaxed_start(model, ctx.prediction())
    config = GenerateConfig(prompts=[PROMPT], seeds=[0], steps=ctx.scale.sample_steps, token="sks",
                            resolution=ctx.settings.resolution)
    generate(model, GenerateConfig(prompts=[PROMPT], steps=1, token="sks", resolution=ctx.settings.resolution))
    clock = Clock(ctx.device)
    with clock.timed():
        generate(model, config)
    ctx.drop_hypernet()  # the personalize stages are done: its memory goes to the training runs
    return {"generate": record(ctx.label("generate"), clock.samples, steps=ctx.scale.sample_steps,
                               guidance=config.guidance)}


# ----------------------------------------------------------------------------------------- DreamBooth


def measure_lora_dreambooth(ctx: SpeedContext) -> dict:
    from lowdim_sd.modes import adapter_trainable

    model = ctx.model()
    trainable = adapter_trainable(model, lowdim.get_space("lora", rank=4), LAYERS)
    steps = ctx.scale.finetune_steps
    samples = train_seconds(ctx, model, trainable, steps, defaults.LEARNING_RATES["lora"])
    return {"lora_db": record(ctx.label("lora_db"), samples, steps=steps, rank=4)}


def measure_full_dreambooth(ctx: SpeedContext) -> dict:
    """Every UNet and text-encoder weight trains: fp32 weights (AdamW), autocast in the run's half dtype."""
    from lowdim_sd.modes import FullTrainable

    half = ctx.settings.dtype if ctx.settings.dtype != "fp32" else "no"
    model = ctx.model("fp32")
    steps = ctx.scale.finetune_steps
    try:
        trainable = FullTrainable(model, train_text_encoder=True)
        samples = train_seconds(ctx, model, trainable, steps, defaults.LEARNING_RATES["full"], mixed_precision=half)
    finally:
        ctx.drop_model()  # its weights were trained
    return {"full_db": record(ctx.label("full_db"), samples, steps=steps, weights="fp32", mixed_precision=half,
                              extrapolated_to=ctx.scale.dreambooth_steps)}


# ------------------------------------------------------------------------------------ batched precompute


def measure_batched(ctx: SpeedContext, subjects: int) -> dict:
    """K subjects' LiDBs trained in one batch (per-sample adapters), as ``precompute --batch-subjects K``."""
    from lowdim_sd.modes import adapter_trainable

    key, model, steps = f"batched_k{subjects}", ctx.model(), ctx.scale.batch_steps
    names = [f"s{index}" for index in range(subjects)]
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), LAYERS, subject_names=names)
    # train_seconds warms up first: the batch's first allocations and kernel choices stay untimed
    samples = train_seconds(ctx, model, trainable, steps, defaults.LEARNING_RATES["lidb"], subjects=subjects)
    return {key: record(ctx.label(key), samples, subjects=subjects, steps=steps)}
