"""``lowdim inspect`` on whatever --model every other command accepts, and what the export tells ComfyUI users."""

from __future__ import annotations

import json

import pytest

import lowdim
from lowdim.sizing import layer_specs
from lowdim_cli.main import main
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import resolve_layers


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def layer_count(tiny_sd, layers: str | None = None) -> int:
    return len(layer_specs(load_sd(str(tiny_sd)).modules, resolve_layers(layers)))


def test_inspect_takes_a_diffusers_folder(tiny_sd, capsys):
    code, out, err = run(capsys, "inspect", "-m", tiny_sd, "-s", "lidb", "--json", "--no-files")
    assert code == 0, err
    total = json.loads(out)["groups"][-1]
    assert total["layers"] == layer_count(tiny_sd) and total["params"] > 0
    code, out, err = run(capsys, "inspect", "-m", tiny_sd, "-s", "lidb", "--layers", "text", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["groups"][-1]["layers"] == layer_count(tiny_sd, "text")
    assert report["file_bytes"]["fp16"] < report["file_bytes"]["fp32"]


def test_inspect_takes_a_single_file_with_its_config(tiny_sd, tmp_path, capsys):
    from lowdim_sd.ldm_checkpoint import save_single_file

    single = save_single_file(load_sd(str(tiny_sd), device="cpu", dtype="fp32").pipe, tmp_path / "tiny.safetensors")
    code, out, err = run(capsys, "inspect", "-m", single, "--model-config", tiny_sd, "-s", "lidb", "--json",
                         "--no-files")
    assert code == 0, err
    assert json.loads(out)["groups"][-1]["layers"] == layer_count(tiny_sd)


def test_inspect_takes_a_hub_id_by_its_configs_alone(tiny_sd, capsys, monkeypatch):
    import lowdim_sd.skeletons as skeletons

    asked = []
    real = skeletons.component_configs
    monkeypatch.setattr(skeletons, "component_configs", lambda source: asked.append(source) or real(str(tiny_sd)))
    code, out, err = run(capsys, "inspect", "-m", "someone/some-sd15-finetune", "-s", "lidb", "--json", "--no-files")
    assert code == 0, err
    assert asked == ["someone/some-sd15-finetune"]
    assert json.loads(out)["groups"][-1]["layers"] == layer_count(tiny_sd)


def test_inspect_of_a_missing_model_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "inspect", "-m", tmp_path / "nothing-here", "-s", "lidb", "--no-files")
    assert code == 1 and "nothing-here" in err and "Traceback" not in err


@pytest.fixture
def adapter(tiny_sd, tmp_path):
    model = load_sd(str(tiny_sd))
    adapters = lowdim.inject(model.modules, lowdim.get_space("lora", rank=2), resolve_layers(None))
    return lowdim.save_adapter(tmp_path / "me.safetensors", adapters, "default")


def test_diffusers_export_warns_that_comfyui_reads_only_kohya_for_the_unet(adapter, tmp_path, capsys):
    from lowdim_sd.export import export_adapter

    with pytest.warns(UserWarning, match="ComfyUI.*kohya.*UNet"):
        export_adapter(adapter, tmp_path / "me.diffusers.safetensors", "diffusers")
    deep = tmp_path / ("a-folder-with-a-long-name-" * 4) / "x.safetensors"
    deep.parent.mkdir()
    code, out, err = run(capsys, "export", adapter, "--format", "diffusers", "-o", deep)
    assert code == 0 and f"wrote {deep}" in out  # a path of any length on one line, to copy
    assert any(line.startswith(f"Warning: {deep}: ComfyUI") and line.endswith("--format kohya")
               for line in err.splitlines()), err


def test_kohya_export_and_text_only_diffusers_export_do_not_warn(tiny_sd, adapter, tmp_path, recwarn):
    from lowdim_sd.export import export_adapter

    export_adapter(adapter, tmp_path / "me.kohya.safetensors", "kohya")
    model = load_sd(str(tiny_sd))
    text = lowdim.inject(model.modules, lowdim.get_space("lora", rank=2), resolve_layers("text"))
    text_only = lowdim.save_adapter(tmp_path / "text.safetensors", text, "default")
    export_adapter(text_only, tmp_path / "text.diffusers.safetensors", "diffusers")
    assert not [w for w in recwarn if "ComfyUI" in str(w.message)]
