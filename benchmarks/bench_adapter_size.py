"""Adapter FILE sizes for Stable Diffusion 1.5's paper layer set, written from a real (random) SD1.5 model.

Builds SD1.5's UNet and CLIP text encoder from their configs with random weights (about 4.5 GB of RAM,
nothing downloaded), injects each adapter into the default layer set (unet+text, 176 layers), gives it
non-zero weights as a trained adapter would have, writes it with lowdim.save_adapter and reports the
bytes on disk against the paper's 120 KB (HyperDreamBooth §1) and full DreamBooth's weights.

    python benchmarks/bench_adapter_size.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import lowdim
from lowdim.injection.select import select_layers
from lowdim_sd.architecture import SD15_TEXT_CONFIG, SD15_UNET_CONFIG, build_components
from lowdim_sd.plugin import SDBackend

PAPER_LIDB_BYTES = 120_000  # "~120KB" for the LiDB model (paper abstract and §4.1)


def adapter_file_bytes(model, space, layers, dtype: str, **options) -> int:
    adapters = lowdim.Adapters(model)
    adapters.add("me", space, layers, seed=0)
    with torch.no_grad():  # what a trained adapter holds: no zeros that a format could exploit
        for param in adapters.parameters("me"):
            param.normal_(0, 0.1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "me.safetensors"
        lowdim.save_adapter(path, adapters, "me", dtype=dtype, **options)
        size = path.stat().st_size
    adapters.remove_all()
    return size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Bytes on disk of LiDB, LoRA and full DreamBooth files for SD1.5's unet+text layer set (176 "
                    "layers), against the paper's 120 KB. Builds SD1.5 from its configs with random weights: about "
                    "4.5 GB of RAM and 15 s; nothing downloaded. Takes no options.")
    parser.parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(0)
    model = build_components(SD15_UNET_CONFIG, SD15_TEXT_CONFIG)
    built = time.perf_counter() - started
    backend = SDBackend("sd15", "")
    layers = backend.resolve_layer_set(None)
    full_params = sum(p.numel() for p in model.parameters())
    rows = [
        ("LiDB a=100 b=50 r=1, fp16, seed-only bases", adapter_file_bytes(model, lowdim.get_space("lidb"), layers,
                                                                          "fp16")),
        ("LiDB, fp32, seed-only bases", adapter_file_bytes(model, lowdim.get_space("lidb"), layers, "fp32")),
        ("LiDB, fp16, bases stored in the file", adapter_file_bytes(model, lowdim.get_space("lidb"), layers, "fp16",
                                                                    store_bases=True)),
        ("LoRA r=1, fp16", adapter_file_bytes(model, lowdim.get_space("lora", rank=1), layers, "fp16")),
        ("LoRA r=4, fp16", adapter_file_bytes(model, lowdim.get_space("lora", rank=4), layers, "fp16")),
        ("full DreamBooth: UNet + text encoder weights, fp16", full_params * 2),
    ]
    lidb = rows[0][1]
    print(f"SD1.5 UNet + text encoder built from config with random weights in {built:.0f} s: "
          f"{full_params:,} parameters; layer set unet+text: {len(select_layers(model, layers))} layers\n")
    print("| file | bytes | vs paper's 120 KB | vs LiDB fp16 |")
    print("|---|---:|---:|---:|")
    for name, size in rows:
        print(f"| {name} | {size:,} | {size / PAPER_LIDB_BYTES:.3f}x | {size / lidb:,.1f}x |")


if __name__ == "__main__":
    main()
