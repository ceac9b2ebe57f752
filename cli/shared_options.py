"""The options several commands take, declared once so their help cannot drift apart
(tests/test_shared_option_help.py).
"""

from __future__ import annotations

from typing import Annotated

import typer

from lowdim_cli.info_commands import MODEL_CONFIG_HELP, MODEL_CONFIG_METAVAR

Model = Annotated[str, typer.Option(
    "--model", "-m", help="sd15, tinyfaces, any registered name, a hub id, a diffusers folder or a .safetensors file.")]
Device = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps.")]
CUDA_GRAPHS_HELP = ("On a CUDA GPU: capture the text encoder's and the UNet's forward and backward once and "
                    "replay them every step (the same steps, far fewer kernel launches). Experimental, not yet "
                    "timed on a GPU: see docs/benchmarks.md.")
Dtype = Annotated[str, typer.Option(help="Model weights: auto (fp16 on GPU, fp32 on CPU), fp32, fp16, bf16.")]
# merge loads on the CPU whatever the machine, so its auto is always fp32: a half-size file needs --dtype fp16
MergeDtype = Annotated[str, typer.Option(
    help="Weights of the merged model: auto (fp32: merge runs on the CPU), fp32, fp16 (half the file), bf16.")]
ModelConfig = Annotated[str | None, typer.Option(metavar=MODEL_CONFIG_METAVAR, help=MODEL_CONFIG_HELP)]
SaveDtype = Annotated[str, typer.Option(
    help="Tensors of the adapter file: fp16 (half the bytes of fp32, e.g. 54 KB for an SD1.5 LiDB; the "
         "difference is far below what changes an image), fp32 or bf16.")]
Resolution = Annotated[int | None, typer.Option(
    help="Image side in pixels, a multiple of 8 (default: the model's, 512 for sd15); lower is faster, "
         "the model draws best at its own.", show_default=False)]
# Options of the training commands (train, precompute, personalize, train-hypernet), declared once so their help
# cannot drift apart: tests/test_shared_option_help.py
SPACE_OPTIONS_HELP = "Space option KEY=VALUE, repeatable."
SpaceOptions = Annotated[list[str] | None, typer.Option("--set", help=SPACE_OPTIONS_HELP)]
TrainingPrompt = Annotated[str, typer.Option(help="Training prompt; [V] is replaced by --token.")]
Augment = Annotated[bool, typer.Option(help="Random flips and small crops of the references.")]
MixedPrecision = Annotated[str, typer.Option(help="no, fp16 or bf16 autocast.")]
GradientCheckpointing = Annotated[bool, typer.Option(
    "--gradient-checkpointing",
    help="Recompute activations in the backward pass: less memory for slower steps (1.8x in personalize's "
         "finetune), the same result. Off by default: personalize on SD1.5 at 512 px in fp16 peaks at 4.2 GiB "
         "with or without it (measured on an H200), so an 8 GB card needs nothing; it helps at larger resolutions "
         "and batches.")]
# What 0 keeps differs: train keeps its finished run's last step (a later --resume --steps N goes on from it),
# train-hypernet keeps none (lowdim_sd.checkpoints.keep_the_end, lowdim_sd.hypertrain's finish_checkpoints)
CheckpointEvery = Annotated[int, typer.Option(
    help="Save a resumable checkpoint every N steps (0: only the finished run's last step, which --resume --steps N "
         "goes on from; with --full, none).")]
HypernetCheckpointEvery = Annotated[int, typer.Option(
    help="Save a resumable checkpoint every N steps and at the end (0: none). A stopped run keeps the step it "
         "stopped at.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint in --out.")]
CropMargin = Annotated[float, typer.Option(
    help="Room around the face, as a fraction of its width on each side, 0 to 3 (0.25 tight, 0.6 hair and chin).")]
