"""Host time of a whole finetune step at SD1.5's structure, and how much of it is lowdim's.

A GPU step at batch 1 waits on its host (docs/benchmarks.md). ``host_time.py`` times the adapters alone;
this times the engine's whole step (VAE encode, text encoder and UNet forward, backward, clipping, AdamW)
on SD1.5's architecture, every block and layer in place, with its widths cut 10× and 32 px pictures, so
that the arithmetic is small and what is left is what the host does. The floor is the same step with no
adapter: only the UNet's first convolution and the token table train, so the backward still runs through
both models. The step minus the floor is what lowdim adds, and the floor is what diffusers, transformers
and torch's eager dispatch cost, which only a replayed CUDA graph (``--cuda-graphs``) removes. Rounds
alternate the variants side by side; each row keeps its fastest round.

    python benchmarks/step_host_time.py            # 5 rounds of 10 steps
    python benchmarks/step_host_time.py --quick    # 2 rounds of 2 steps: checks that it runs
    python benchmarks/step_host_time.py --rounds 1 --steps 1    # the test's: every row, the least time
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import torch

import lowdim
from lowdim_sd.architecture import LAYER_SETS, SD15_TEXT_CONFIG, SD15_UNET_CONFIG
from lowdim_sd.bench.speed_measures import relaxed_start
from lowdim_sd.loading import SDModel, load_sd
from lowdim_sd.modes import adapter_trainable
from lowdim_sd.tiny import assemble_pipeline
from lowdim_sd.train import Subject, TrainConfig, train

WIDTHS = [32, 64, 128, 128]  # SD1.5's 320/640/1280/1280, 10× narrower (GroupNorm's 32 groups still divide)
TEXT_WIDTH = 64  # the prompt's 768
SIDE = 32  # pixels: a 4×4 latent


def build_model(folder: str) -> SDModel:
    """SD1.5's blocks, layers and layer names at a tenth of the widths, saved and loaded as a user's model."""
    text = {key: value for key, value in SD15_TEXT_CONFIG.items() if key != "vocab_size"}  # one row per word
    text.update(hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_attention_heads=4,
                projection_dim=TEXT_WIDTH)
    unet = {**SD15_UNET_CONFIG, "block_out_channels": WIDTHS, "cross_attention_dim": TEXT_WIDTH}
    vae = {"block_out_channels": [32] * 4, "layers_per_block": 2, "latent_channels": 4,
           "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}
    assemble_pipeline(unet, text, vae).save_pretrained(f"{folder}/model")
    return load_sd(f"{folder}/model", "cpu", "fp32")


class FloorTrainable:
    """No adapter: the UNet's first convolution and the token table train, so backward crosses both models."""

    num_subjects = 1
    trains_model_weights = True

    def __init__(self, model: SDModel) -> None:
        self.parameters = [model.pipe.unet.conv_in.weight, model.pipe.text_encoder.get_input_embeddings().weight]
        for parameter in self.parameters:
            parameter.requires_grad_(True)

    def signature(self) -> dict:
        return {"floor": True}


def space_step(space: str, **options) -> Callable[[SDModel], object]:
    def attach(model: SDModel):
        return adapter_trainable(model, lowdim.get_space(space, **options), LAYER_SETS["unet+text"])
    return attach


VARIANTS: dict[str, Callable[[SDModel], object]] = {
    "floor: no adapter (diffusers, transformers, the engine)": FloorTrainable,
    "personalize: LoRA r=4 on merged LiDB": relaxed_start,
    "LiDB": space_step("lidb"),
    "LoRA r=1": space_step("lora", rank=1),
}


def detach_all(model: SDModel) -> None:
    lowdim.Adapters(model.modules).remove_all()
    model.modules.requires_grad_(False)


def seconds_per_step(model: SDModel, make: Callable[[SDModel], object], steps: int) -> float:
    trainable = make(model)
    subjects = [Subject(torch.rand(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0)) * 2 - 1, 0)]
    try:
        config = TrainConfig(steps=1, learning_rate=1e-4, seed=0)
        train(model, subjects, trainable, config, progress=False)  # untimed: AdamW's state, kept stacks
        config.steps = steps
        started = time.perf_counter()
        train(model, subjects, trainable, config, progress=False)
        return (time.perf_counter() - started) / steps
    finally:
        detach_all(model)


def measure(model: SDModel, rounds: int, steps: int) -> dict[str, float]:
    best: dict[str, float] = {}
    names = list(VARIANTS)
    for index in range(rounds):
        for name in names[index % len(names):] + names[:index % len(names)]:  # each round starts elsewhere
            seconds = seconds_per_step(model, VARIANTS[name], steps)
            best[name] = min(best.get(name, seconds), seconds)
    return best


def report(best: dict[str, float]) -> str:
    floor = best[next(iter(VARIANTS))]
    lines = ["| step | ms | / floor | lowdim's share (ms) |", "|---|---:|---:|---:|"]
    for name, seconds in best.items():
        lines.append(f"| {name} | {seconds * 1e3:.1f} | {seconds / floor:.2f} | {(seconds - floor) * 1e3:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 steps: checks that it runs")
    parser.add_argument("--rounds", type=int, default=None, help="rounds over all variants (default 5)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant and round (default 10)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one host thread, as a GPU step's
    try:
        with tempfile.TemporaryDirectory() as folder:
            model = build_model(folder)
            rounds, steps = args.rounds or (2 if args.quick else 5), args.steps or (2 if args.quick else 10)
            print(report(measure(model, rounds, steps)))
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
