"""Every option a command takes reaches the job it runs (review FM): each command's run function is replaced by
one that keeps the job, and every option typed at a value other than its default must be on that job."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from lowdim_cli.main import main


class Ran(Exception):
    """Raised in place of the run: here is the job the command line built."""


def field(job, path: str):
    for name in path.split("."):
        job = job[name] if isinstance(job, dict) else getattr(job, name)
    return job


# (command line, module and function the command calls, {the job's field: the value typed, or a check of it})
CASES = {
    "personalize": (
        ["personalize", "-m", "tinyfaces", "-i", "face.png", "--set", "rank=2", "-l", "unet", "--steps", "7",
         "--rank", "3", "--lr", "0.25", "--batch-size", "5", "--keep-styles", "0.05", "--no-describe", "--token",
         "zq", "--seed", "11", "--export", "kohya", "--preview-steps", "6", "--preview-draw", "0.5",
         "--iterations", "2", "--crop", "--crop-margin", "0.3", "--face-index", "1", "--overwrite",
         "--gradient-checkpointing", "--resolution", "64", "--save-dtype", "bf16", "--device", "cpu",
         "--dtype", "bf16", "--model-config", "cfg", "--hypernet", "h.safetensors", "--space", "lidb"],
        ("lowdim_sd.personalize", "personalize"),
        {"space_options": {"rank": 2}, "layers": "unet", "steps": 7, "rank": 3, "learning_rate": 0.25,
         "batch_size": 5, "keep_styles": 0.05, "describe": False, "token": "zq", "seed": 11, "export": ["kohya"],
         "preview_steps": 6, "preview_draws": ("0.5",), "iterations": 2, "crop": True, "crop_margin": 0.3,
         "face_index": 1, "overwrite": True, "gradient_checkpointing": True, "resolution": 64,
         "save_dtype": "bf16", "device": "cpu", "dtype": "bf16", "model_config": "cfg",
         "hypernet": Path("h.safetensors"), "image": Path("face.png")}),
    "personalize-ablations": (
        ["personalize", "-m", "tinyfaces", "-i", "face.png", "--no-hyper", "--no-preview", "--cuda-graphs"],
        ("lowdim_sd.personalize", "personalize"),
        {"no_hyper": True, "preview": False, "cuda_graphs": True}),
    "train": (
        ["train", "-m", "tinyfaces", "-i", "face.png", "--set", "rank=2", "-l", "unet", "--steps", "7", "--lr",
         "0.25", "--batch-size", "3", "--grad-accum", "2", "--dropout", "0.1", "--prompt", "a [V] dog", "--token",
         "zq", "--seed", "11", "--no-augment", "--mixed-precision", "bf16", "--gradient-checkpointing",
         "--checkpoint-every", "5", "--resume", "--overwrite", "--resolution", "64", "--save-dtype", "bf16",
         "--device", "cpu", "--dtype", "bf16", "--model-config", "cfg", "--space", "lora"],
        ("lowdim_sd.workflows", "run_train"),
        {"space": "lora", "space_options": {"rank": 2}, "layers": "unet", "config.steps": 7, "learning_rate": 0.25,
         "config.batch_size": 3, "config.grad_accum": 2, "dropout": 0.1, "config.prompt": "a [V] dog",
         "config.token": "zq", "config.seed": 11, "config.augment": False, "config.mixed_precision": "bf16",
         "config.gradient_checkpointing": True, "config.checkpoint_every": 5, "resume": True, "overwrite": True,
         "resolution": 64, "save_dtype": "bf16", "device": "cpu", "dtype": "bf16", "model_config": "cfg"}),
    "train-init": (
        ["train", "-m", "tinyfaces", "-i", "face.png", "--init", "a.safetensors", "--rank", "3",
         "--no-merge-frozen", "--cuda-graphs"],
        ("lowdim_sd.workflows", "run_train"),
        {"initial": Path("a.safetensors"), "rank": 3, "merge_frozen": False, "config.cuda_graphs": True}),
    "train-full": (
        ["train", "-m", "tinyfaces", "--subjects", "people", "--full", "--train-text-encoder"],
        ("lowdim_sd.workflows", "run_train"),
        {"full": True, "train_text_encoder": True, "subjects": Path("people")}),
    "generate": (
        ["generate", "-m", "tinyfaces", "-p", "a [V] face", "-a", "me.safetensors:0.5", "--seed", "3", "--seed",
         "4", "--steps", "7", "--guidance", "2.5", "--negative", "blur", "--scheduler", "euler", "--token", "zq",
         "--text-encoder-scale", "0.5", "--adapter-start", "0.2", "--adapter-end", "0.7",
         "--cross-attention-scale", "0.6", "--batch", "2", "--resolution", "64", "--device", "cpu", "--dtype",
         "bf16", "--model-config", "cfg"],
        ("lowdim_sd.generate_job", "generate_to_folder"),
        {"adapters": ["me.safetensors:0.5"], "config.seeds": [3, 4], "config.steps": 7, "config.guidance": 2.5,
         "config.negative_prompt": "blur", "config.scheduler": "euler", "config.token": "zq",
         "config.parts.text_encoder_scale": 0.5, "config.parts.adapter_start": 0.2,
         "config.parts.adapter_end": 0.7, "config.parts.cross_attention_scale": 0.6, "config.batch": 2,
         "config.resolution": 64, "device": "cpu", "dtype": "bf16", "model_config": "cfg"}),
    "export": (
        ["export", "me.safetensors", "-f", "kohya", "-o", "x.safetensors", "--save-dtype", "bf16", "--overwrite"],
        ("lowdim_sd.export_job", "checked_export"),
        {"adapter": Path("me.safetensors"), "fmt": "kohya", "out": "x.safetensors", "dtype": "bf16",
         "overwrite": True}),
    "merge": (
        ["merge", "-m", "tinyfaces", "-a", "me.safetensors:0.5", "-o", "m", "-f", "diffusers", "--overwrite",
         "--dtype", "fp16", "--model-config", "cfg"],
        ("lowdim_sd.merge_job", "merge_adapters"),
        {"adapters": ["me.safetensors:0.5"], "out": Path("m"), "fmt": "diffusers", "overwrite": True,
         "dtype": "fp16", "model_config": "cfg"}),
    "precompute": (
        ["precompute", "-m", "tinyfaces", "-i", "faces", "-o", "w", "--set", "rank=2", "-l", "unet", "--steps",
         "7", "--lr", "0.25", "--batch-subjects", "3", "--batch-size", "2", "--prompt", "a [V] dog", "--token",
         "zq", "--seed", "11", "--no-augment", "--shared-noise", "--optimizer", "sign", "--init", "w0",
         "--mixed-precision", "bf16", "--gradient-checkpointing", "--limit", "4", "--crop", "--crop-margin",
         "0.3", "--face-index", "1", "--device", "cpu", "--resolution", "64", "--dtype", "bf16",
         "--model-config", "cfg", "--space", "lora"],
        ("lowdim_sd.precompute", "precompute"),
        {"identities": Path("faces"), "out": Path("w"), "space": "lora", "space_options": {"rank": 2},
         "layers": "unet", "config.steps": 7, "learning_rate": 0.25, "batch_subjects": 3, "config.batch_size": 2,
         "config.prompt": "a [V] dog", "config.token": "zq", "config.seed": 11, "config.augment": False,
         "shared_noise": True, "config.optimizer": "sign", "init": Path("w0"), "config.mixed_precision": "bf16",
         "config.gradient_checkpointing": True, "limit": 4, "crop": True, "crop_margin": 0.3, "face_index": 1,
         "device": "cpu", "resolution": 64, "dtype": "bf16", "model_config": "cfg"}),
    "train-hypernet": (
        ["train-hypernet", "-w", "w", "-m", "tinyfaces", "-o", "h", "--steps", "7", "--max-minutes", "2",
         "--batch-size", "3", "--lr", "0.25", "--weight-decay", "0.01", "--alpha", "0.25", "--beta", "2",
         "--extra-images", "x", "--extra-batch-size", "2", "--image-root", "r", "--key-steps", "9",
         "--key-renders", "1", "--freeze-encoder", "--standardize", "--iterations", "2", "--width", "64",
         "--decoder-layers", "3", "--heads", "4", "--set", "foo=1", "--val-fraction", "0.2", "--val-identities",
         "3", "--val-every", "5", "--log-every", "4", "--checkpoint-every", "6", "--resume", "--seed", "11",
         "--no-augment", "--all-images", "--prompt", "a [V] dog", "--token", "zq", "--mixed-precision", "bf16",
         "--gradient-checkpointing", "--num-workers", "2", "--device", "cpu", "--dtype", "bf16",
         "--model-config", "cfg"],
        ("lowdim_sd.hypertrain", "train_hypernet"),
        {"weights": [Path("w")], "model": "tinyfaces", "out": Path("h"), "steps": 7, "max_minutes": 2.0,
         "batch_size": 3, "learning_rate": 0.25, "weight_decay": 0.01, "alpha": 0.25, "beta": 2.0,
         "extra_images": [Path("x")], "extra_batch_size": 2, "image_root": Path("r"), "key_steps": 9,
         "key_renders": 1, "hyper.freeze_encoder": True, "hyper.standardize": True, "hyper.iterations": 2,
         "hyper.width": 64, "hyper.decoder_layers": 3, "hyper.attention_heads": 4, "hyper.foo": 1,
         "val_fraction": 0.2, "val_identities": 3, "val_every": 5, "log_every": 4, "checkpoint_every": 6,
         "resume": True, "seed": 11, "augment": False, "all_images": True, "prompt": "a [V] dog", "token": "zq",
         "mixed_precision": "bf16", "gradient_checkpointing": True, "num_workers": 2, "cpu": True,
         "dtype": "bf16", "model_config": "cfg"}),
    "train-hypernet-overwrite": (
        ["train-hypernet", "-w", "w", "--overwrite", "--features", "f.safetensors", "--key-pairs", "k.json",
         "--diffusion-target", "theta", "--encoder-config", "tiny"],
        ("lowdim_sd.hypertrain", "train_hypernet"),
        {"overwrite": True, "features": Path("f.safetensors"), "key_pairs": Path("k.json"),
         "diffusion_target": "theta", "hyper.encoder_config": lambda config: config.get("hidden_size")}),
    "eval": (
        ["eval", "{tmp}", "--metrics", "tinyfaces-identity", "--no-progress", "--device", "cpu", "-r", "ref.png",
         "--token", "zq", "--crop", "--crop-size", "128", "--crop-margin", "0.3", "--set",
         "tinyfaces-identity.batch_size=3"],
        ("lowdim_sd.eval.job", "run_eval"),
        {"references": (Path("ref.png"),), "token": "zq", "crop": True, "crop_size": 128, "margin": 0.3,
         "device": "cpu", "metrics": ("tinyfaces-identity",),
         "options": lambda options: options == {"tinyfaces-identity": {"batch_size": 3}}}),
    "bench-quality": (
        ["bench", "quality", "-i", "{tmp}", "-m", "tinyfaces", "--seed", "3", "--sample-steps", "5", "--guidance",
         "2.5", "--limit", "2", "--batch-subjects", "2", "--workers", "2", "--threads", "1",
         "--gallery-identities", "2", "--device", "cpu", "--dtype", "bf16", "--prompt", "a [V] dog", "-o", "b"],
        ("lowdim_sd.bench.quality", "run_quality"),
        {"seed": 3, "sample_steps": 5, "guidance": 2.5, "limit": 2, "batch_subjects": 2, "workers": 2,
         "threads": 1, "gallery_identities": 2, "device": "cpu", "dtype": "bf16", "prompts": ["a [V] dog"],
         "out": Path("b")}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_option_typed_reaches_the_job(case, tmp_path, monkeypatch):
    argv, (module, name), expected = CASES[case]

    def keep(job, *args, **kwargs):
        raise Ran(job)

    monkeypatch.setattr(importlib.import_module(module), name, keep)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Ran) as ran:
        main([word.replace("{tmp}", str(tmp_path)) for word in argv])
    job = ran.value.args[0]
    wrong = {path: field(job, path) for path, value in expected.items()
             if not (value(field(job, path)) if callable(value) else field(job, path) == value)}
    assert not wrong, wrong
