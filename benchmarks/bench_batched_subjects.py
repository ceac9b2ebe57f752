"""Subjects per hour: K subjects trained in one batch (per-sample adapters) versus one after another.

    python benchmarks/bench_batched_subjects.py [--model PATH] [--subjects 8] [--steps 20] [--space lidb]
                                                [--breakdown]

Without --model it builds the tiny in-process SD pipeline (lowdim_sd.tiny). Prints one table of
times and the ratio from a single run; both arms run interleaved, so machine noise hits both.
--breakdown adds where a batch's time goes: the text encoder + UNet forward and backward at batch
1 and batch K with no adapter, one shared adapter, and K per-sample adapters (best of 15, interleaved).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.tiny import save_tiny_pipeline
from lowdim_sd.train import Subject, TrainConfig, train


def timed_run(model_path: str, subjects: list[Subject], space: str, config: TrainConfig) -> float:
    model = load_sd(model_path)
    names = [f"s{i}" for i in range(len(subjects))]
    trainable = adapter_trainable(model, lowdim.get_space(space), resolve_layers(None), subject_names=names)
    started = time.perf_counter()
    train(model, subjects, trainable, config, progress=False)
    return time.perf_counter() - started


def forward_backward_ms(model_path: str, space: str, k: int, repeats: int = 15) -> dict[str, float]:
    """Milliseconds of text encoder + UNet forward and backward, as training runs them, per variant."""
    variants = {}
    for label, batch in (("no adapter", None), ("one shared adapter", None), (f"{k} per-sample adapters", k)):
        model = load_sd(model_path)
        if label != "no adapter":
            trainable = adapter_trainable(model, lowdim.get_space(space), resolve_layers(None),
                                          subject_names=[f"s{i}" for i in range(batch or 1)])
            for parameter in trainable.parameters:  # non-zero, so every factor is live in the backward
                parameter.data.normal_(0.0, 0.01)
        model.pipe.unet.train()
        model.pipe.text_encoder.train()
        variants[label] = model
    unet = variants["no adapter"].pipe.unet
    latent, width = unet.config.sample_size, unet.config.in_channels
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(k, width, latent, latent, generator=generator)
    ids = torch.randint(0, 20, (k, 77), generator=generator)
    timesteps = torch.randint(0, 1000, (k,), generator=generator)

    def step(model, n: int) -> float:
        started = time.perf_counter()
        noisy = latents[:n].clone().requires_grad_(True)  # gradients flow even with no adapter at all
        hidden = model.pipe.text_encoder(ids[:n])[0]
        model.pipe.unet(noisy, timesteps[:n], hidden).sample.pow(2).mean().backward()
        return time.perf_counter() - started

    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for label, model in variants.items():
            sizes = (k,) if "per-sample" in label else (1, k)
            for n in sizes:
                times.setdefault(f"{label}, batch {n}", []).append(step(model, n))
    return {name: 1000 * min(values) for name, values in times.items()}


# docs/benchmarks.md ("Batched multi-subject training"): at least 4x the subjects per hour, at K = 16 on a CPU
# (2 cores) and at K = 8 on a GPU. A CPU cannot reach 4x at K = 8: the per-sample work already dominates there.
GOAL_SPEEDUP = 4
GOAL_K = {"cpu": 16, "cuda": 8}
KIND = {"cpu": "CPU", "cuda": "GPU"}


def goal_note(k: int, device: str, speedup: float) -> str:
    """The goal for ``k`` subjects on ``device`` (a torch device type), judged; or why this run is not judged."""
    if device not in GOAL_K:
        return f"not judged: the goals are at K={GOAL_K['cpu']} on a CPU and K={GOAL_K['cuda']} on a GPU"
    if k == GOAL_K[device]:
        verdict = "met" if speedup >= GOAL_SPEEDUP else "NOT met"
        return f"goal ≥ {GOAL_SPEEDUP}x at K={k} on a {KIND[device]}: {verdict}"
    other = next(kind for kind in GOAL_K if kind != device)
    elsewhere = f"; K={k} is a {KIND[other]} goal" if GOAL_K[other] == k else ""
    return f"not judged: the goal ≥ {GOAL_SPEEDUP}x is at K={GOAL_K[device]} on a {KIND[device]}{elsewhere}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="SD1.x folder or name (default: tiny in-process pipeline)")
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--space", default="lidb")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--breakdown", action="store_true", help="also time forward+backward per variant")
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    model_path = args.model or str(save_tiny_pipeline(folder))
    probe = load_sd(model_path)
    resolution, device = probe.resolution, probe.device.type
    generator = torch.Generator().manual_seed(0)
    subjects = [Subject(torch.rand(2, 3, resolution, resolution, generator=generator) * 2 - 1, seed=i)
                for i in range(args.subjects)]
    config = TrainConfig(steps=args.steps, learning_rate=1e-3)
    timed_run(model_path, subjects[:1], args.space, TrainConfig(steps=2))  # warm-up: imports, allocator
    sequential, batched = [], []
    for _ in range(args.repeats):
        sequential.append(sum(timed_run(model_path, [s], args.space, config) for s in subjects))
        batched.append(timed_run(model_path, subjects, args.space, config))
    seq, bat = min(sequential), min(batched)
    k = args.subjects
    print(f"model={args.model or 'tiny in-process'} space={args.space} K={k} steps={args.steps} device={device} "
          f"torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"{'arm':<12}{'seconds':>10}{'subjects/hour':>16}")
    print(f"{'sequential':<12}{seq:>10.2f}{k * 3600 / seq:>16.0f}")
    print(f"{'batched':<12}{bat:>10.2f}{k * 3600 / bat:>16.0f}")
    print(f"speed-up batched/sequential: {seq / bat:.2f}x ({goal_note(k, device, seq / bat)})")
    if args.breakdown:
        print(f"{'text encoder + UNet, forward + backward':<44}{'ms':>8}")
        for name, ms in forward_backward_ms(model_path, args.space, k).items():
            print(f"{name:<44}{ms:>8.1f}")


if __name__ == "__main__":
    main()
