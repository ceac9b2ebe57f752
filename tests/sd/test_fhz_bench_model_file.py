"""`lowdim bench quality --model` takes what every other command's --model takes, a single .safetensors model file
included, and says so in its help in the same words."""

from __future__ import annotations

import json

import typer.main

from lowdim_cli.main import app, main
from lowdim_sd.ldm_checkpoint import save_single_file
from lowdim_sd.loading import load_sd


def test_bench_quality_runs_on_a_single_file_model(tiny_sd, identities, tmp_path, quick_methods, one_thread):
    model_file = save_single_file(load_sd(str(tiny_sd), device="cpu", dtype="fp32").pipe, tmp_path / "tiny.safetensors")
    out = tmp_path / "bench"
    code = main(["bench", "quality", "-i", str(identities), "-m", str(model_file), "--model-config", str(tiny_sd),
                 "--methods", "base", "--metrics", "tinyfaces-image", "--prompt", "a [V] face", "--sample-steps", "2",
                 "--gallery-prompts", "", "-o", str(out)])
    assert code == 0
    table = json.loads((out / "table.json").read_text())
    assert table["settings"]["model"] == str(model_file)
    assert sorted(p.parent.name for p in (out / "images" / "base").glob("*/00.png")) == ["id-0", "id-1"]


def _model_option(*path: str) -> typer.core.TyperOption:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return next(param for param in command.params if "--model" in param.opts)


def test_bench_quality_model_help_is_the_shared_one_with_its_own_default():
    bench, train = _model_option("bench", "quality"), _model_option("train")
    assert bench.help == train.help and ".safetensors file" in bench.help
    assert bench.opts == train.opts and bench.default == "tinyfaces"
