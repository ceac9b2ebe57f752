"""``lowdim train / generate / export`` end to end on a tiny pipeline folder, and their bad-input errors."""

from __future__ import annotations

import pytest
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it
from PIL import Image
from safetensors import safe_open

import lowdim
from lowdim_cli.main import main
from lowdim_sd.loading import ModelLoadError, load_sd


@pytest.fixture
def refs(tmp_path):
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    save_images(images, tmp_path / "refs", "me")
    return tmp_path / "refs"


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_train_generate_export_round_trip(tiny_sd, refs, tmp_path, capsys):
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--steps", 3, "--out", tmp_path / "run",
                     "--token", "zwx")
    assert code == 0, text
    adapter = tmp_path / "run" / "adapter.safetensors"
    meta = lowdim.read_adapter(adapter).metadata
    assert meta["space"] == "lidb" and meta["token"] == "zwx" and meta["base_model"] == str(tiny_sd)
    code, text = run(capsys, "generate", "-m", tiny_sd, "-a", f"{adapter}:0.5", "-p", "a photo of a [V] face",
                     "-p", "a [V] face at night", "--seed", 1, "--seed", 2, "--steps", 2, "-o", tmp_path / "img")
    assert code == 0, text
    pngs = sorted((tmp_path / "img").glob("*.png"))
    assert len(pngs) == 5 and Image.open(tmp_path / "img" / "grid.png").width > 2 * 128
    code, text = run(capsys, "export", adapter, "--format", "kohya")
    assert code == 0, text
    with safe_open(str(tmp_path / "run" / "adapter.kohya.safetensors"), "pt") as handle:
        assert any(key.startswith("lora_unet_") and key.endswith(".alpha") for key in handle.keys())  # noqa: SIM118


def test_train_dropout_trains_and_is_recorded_in_the_adapter_file(tiny_sd, refs, tmp_path, capsys):
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--steps", 2, "--dropout", 0.1, "--out", tmp_path)
    assert code == 0, text
    assert lowdim.read_adapter(tmp_path / "adapter.safetensors").dropout == 0.1


def test_a_set_option_the_space_adjusts_on_some_layers_is_said_once(tiny_sd, refs, tmp_path, capsys):
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--steps", 1, "--out", tmp_path / "a",
                     "--set", "a=1000")
    assert code == 0, text
    said = " ".join(text.split())
    assert said.count("Warning: --set a=1000: the space notes something on") == 1
    assert "e.g. a=1000, b=50 clamped to a=" in said
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--steps", 1, "--out", tmp_path / "b")
    assert code == 0 and "Warning" not in text  # the defaults' own clamps on small layers stay quiet


def test_a_set_rank_above_the_layers_is_warned_about_once(tiny_sd, refs, tmp_path, capsys):
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", refs, "--steps", 1, "--out", tmp_path,
                     "--space", "lora", "--set", "rank=4096")
    assert code == 0, text
    said = " ".join(text.split())
    assert said.count("Warning") == 1 and "the rank exceeds what the layer holds" in said  # not again as a --set note
    assert "'subject'" not in said and "adapter '" not in said  # the command's inner adapter name means nothing here


def test_batched_subjects_write_one_adapter_each(tiny_sd, refs, tmp_path, capsys):
    people = tmp_path / "people"
    for name in ("ann", "bob", "cyd"):
        (people / name).mkdir(parents=True)
        for png in refs.glob("*.png"):
            (people / name / png.name).write_bytes(png.read_bytes())
    (people / ".ipynb_checkpoints").mkdir()  # hidden: not a subject, as precompute reads identity folders
    (people / "stray.png").write_bytes(next(refs.glob("*.png")).read_bytes())
    code, text = run(capsys, "train", "-m", tiny_sd, "--subjects", people, "--steps", 2, "--out", tmp_path / "b",
                     "--space", "lora", "--set", "rank=2")
    assert code == 0, text
    assert sorted(p.name for p in (tmp_path / "b").glob("*.safetensors")) == [
        "ann.safetensors", "bob.safetensors", "cyd.safetensors"]
    assert "1 image beside the subject sub-folders is not trained, e.g. stray.png" in " ".join(text.split())


@pytest.mark.parametrize("case, message", [
    ("missing", "--subjects {subjects}: no such folder"),
    ("file", "--subjects {subjects}: a file, not a folder"),
    ("with images", "--subjects and --images both name what to train: pass one"),
])
def test_a_subjects_folder_that_cannot_be_trained_is_one_line_before_the_model_loads(
        tiny_sd, refs, tmp_path, capsys, monkeypatch, case, message):
    import lowdim_sd.loading

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    subjects = {"missing": tmp_path / "nope", "file": next(refs.glob("*.png"))}.get(case, refs.parent)
    extra = ["-i", next(refs.glob("*.png"))] if case == "with images" else []
    code, text = run(capsys, "train", "-m", tiny_sd, "--subjects", subjects, *extra, "--steps", 2,
                     "--out", tmp_path / "o")
    said = " ".join(text.split())
    assert code == 1 and "Traceback" not in said and message.format(subjects=subjects) in said
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("setup, message", [
    ("empty", "holds no image files"),
    ("corrupt", "not a readable image"),
    ("tiny", "too small"),
    ("model", "no such model file or folder"),
    ("pickle", "pickle checkpoints can run code"),
    ("space", "unknown space 'nope'"),
])
def test_bad_input_is_one_line_and_exit_1(tiny_sd, refs, tmp_path, capsys, setup, message):
    images, model, space = refs, tiny_sd, "lidb"
    if setup == "empty":
        images = tmp_path / "empty"
        images.mkdir()
    elif setup == "corrupt":
        images = tmp_path / "bad.png"
        images.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    elif setup == "tiny":
        images = tmp_path / "small.png"
        Image.new("RGB", (3, 3)).save(images)
    elif setup == "model":
        model = tmp_path / "no_such_model"
    elif setup == "pickle":
        model = tmp_path / "model.ckpt"
        model.write_bytes(b"\x80")
    elif setup == "space":
        space = "nope"
    code, text = run(capsys, "train", "-m", model, "-i", images, "--steps", 1, "--out", tmp_path / "o",
                     "--space", space)
    assert code == 1
    assert message in " ".join(text.split()) and "Traceback" not in text
    assert [line for line in text.splitlines() if line.strip()][0].startswith("Error:")


BAD_SETTINGS = [
    (["train", "--steps", -2], "--steps must be >= 1, got -2"),
    (["train", "--lr", -1], "--lr must be a positive number, got -1.0"),
    (["train", "--lr", 0], "--lr must be a positive number, got 0.0"),  # refused, not replaced by the default
    (["personalize", "--lr", 0], "--lr must be a positive number, got 0.0"),
    (["merge", "-o", "UNDER_FILE"], "is a file, where a folder is needed"),
    (["train", "--batch-size", 0], "--batch-size must be >= 1, got 0"),
    (["train", "--grad-accum", 0], "--grad-accum must be >= 1, got 0"),
    (["train", "--mixed-precision", "fp8"], "--mixed-precision must be one of no, fp16, bf16, got 'fp8'"),
    (["train", "--checkpoint-every", -1], "--checkpoint-every must be >= 0"),
    (["train", "--dropout", 1], "--dropout must be a number in [0, 1) (0: off; 0.05 to 0.1 is usual), got 1.0"),
    (["train", "--full", "--dropout", 0.1], "--dropout drops an adapter's input, and --full trains the model's own"),
    (["train", "--rank", 8], "--rank is the rank of the LoRA trained on top of --init"),
    (["train", "--device", "gpu"], "unknown device 'gpu'"),
    (["personalize", "--device", "cpu", "--dtype", "fp16"], "--dtype fp16 on a CPU: CPUs do not train in fp16"),
    (["train", "--device", "cpu", "--dtype", "fp16"], "--dtype fp16 on a CPU"),
    (["personalize", "--device", "meta"], "device 'meta' cannot run lowdim: use auto, cpu, cuda, cuda:N or mps"),
    (["personalize", "--steps", -3], "--steps must be >= 0, got -3"),
    (["personalize", "--iterations", 0], "--iterations must be >= 1 (the hypernetwork's refinement passes), got 0"),
    (["personalize", "--crop-margin", -1], "--crop-margin must be 0 or more"),
    (["personalize", "--crop-margin", "nan"], "--crop-margin must be 0 or more"),
    (["personalize", "--face-index", -1], "--face-index must be 0 or more (0 is the largest face), got -1"),
    (["train", "--steps", 0], "--steps must be >= 1, got 0"),
    (["personalize", "--export", "onnx"], "unknown --export format 'onnx'"),
    (["personalize", "--only-hyper"], "--only-hyper needs a hypernetwork"),
    (["personalize", "--only-hyper", "--no-hyper"], "--only-hyper keeps the prediction and --no-hyper drops it"),
    (["personalize", "--no-hyper", "--iterations", 3], "--iterations sets the hypernetwork's refinement passes, and "
                                                         "--no-hyper drops its prediction"),
    (["personalize", "--iterations", 2], "--iterations sets the hypernetwork's refinement passes, and no hypernetwork"),
    (["personalize", "--hypernet", "nope.safetensors", "--no-hyper"], "nope.safetensors: no such hypernetwork file"),
    (["generate", "--steps", 0], "--steps must be at least 1 with the ddim scheduler, got 0"),
    (["generate", "--scheduler", "pndm", "--steps", 3], "--steps must be at least 4 with the pndm scheduler"),
    (["generate", "-a", "me.safetensors:abc"], "'me.safetensors:abc': the scale after ':' must be a number"),
    (["generate", "-a", "me.safetensors:nan"], "the scale must be a finite number, got 'nan'"),
    (["generate", "-a", "me:smile:"], "'me:smile:': the scale after ':' must be a number"),  # no emoji
    (["generate", "-o", "REFS_FILE"], "a file, where --out needs a folder"),
    (["generate", "-o", "NEW_PICTURE"], "a picture's name, where --out is a folder for the images"),
    (["generate", "--adapter-start", 1], "--adapter-start must be a fraction of the steps in [0, 1), got 1.0"),
    (["generate", "--adapter-start", -0.2], "--adapter-start must be a fraction of the steps in [0, 1), got -0.2"),
    (["generate", "--text-encoder-scale", "inf"], "--text-encoder-scale must be a finite number, got inf"),
    (["generate", "--adapter-start", 0.5, "--adapter-end", 0.4],
     "--adapter-end must be a fraction of the steps after --adapter-start (0.5) and at most 1, got 0.4"),
    (["generate", "--adapter-end", 1.2], "--adapter-end must be a fraction of the steps after --adapter-start (0) and"),
    (["generate", "--text-encoder-scale", 0], "act on the --adapter files drawn, and none is given"),
    (["generate", "--adapter-start", 0.3], "act on the --adapter files drawn, and none is given"),
    (["generate", "-a", "missing.safetensors"], "missing.safetensors: no such adapter file"),
    (["personalize", "-i", "NEW_PICTURE"], "o.png not found"),
    (["merge", "--format", "ckpt", "-o", "NEW_PICTURE"], "unknown --format 'ckpt'; known: single-file, diffusers"),
    (["merge", "-o", "me.ckpt"], "me.ckpt: a single-file checkpoint needs a file name ending in .safetensors"),
]


@pytest.mark.parametrize("args, message", BAD_SETTINGS, ids=[" ".join(map(str, a)) for a, _ in BAD_SETTINGS])
def test_settings_nothing_can_run_with_are_one_line_errors_before_any_work(tiny_sd, refs, tmp_path, capsys,
                                                                          monkeypatch, args, message):
    import lowdim_sd.loading

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    command, *options = args
    first_image = sorted(refs.iterdir())[0]
    names = {"REFS_FILE": str(first_image), "NEW_PICTURE": str(tmp_path / "o.png"),
             "UNDER_FILE": str(first_image / "merged.safetensors")}
    options = [names.get(option, option) if isinstance(option, str) else option for option in options]
    inputs = {"train": ["-i", refs, "--out", tmp_path / "o"],
              "personalize": ["-i", first_image, "--out", tmp_path / "o"],
              "generate": ["-p", "a [V] face"] + ([] if "-o" in options else ["-o", tmp_path / "o"]),
              "merge": ["-a", tmp_path / "o" / "adapter.safetensors"]}[command]
    code, text = run(capsys, command, "-m", tiny_sd, *inputs, *options)
    assert code == 1 and "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0]
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.png").exists()


def test_exporting_onto_a_folder_or_from_one_names_it(tiny_sd, refs, tmp_path, capsys):
    assert run(capsys, "train", "-m", tiny_sd, "-i", refs, "--steps", 1, "--out", tmp_path / "run")[0] == 0
    code, text = run(capsys, "export", tmp_path / "run" / "adapter.safetensors", "-o", refs)
    assert code == 1 and " ".join(text.split()) == f"Error: {refs}: is a folder; give a file name to write"  # alone
    code, text = run(capsys, "export", refs)
    said = " ".join(text.split())
    assert code == 1 and f"{refs}/ is a folder with no lowdim adapter in it; expected a .safetensors adapter" in said
    picture = sorted(refs.iterdir())[0]
    code, text = run(capsys, "export", tmp_path / "run" / "adapter.safetensors", "-o", picture / "x.safetensors")
    assert code == 1 and f"{picture} is a file, where a folder is needed" in " ".join(text.split())
    assert "Traceback" not in text


def test_sd15_offline_says_what_it_looked_for_and_how_to_pass_a_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as error:
        load_sd("sd15")
    text = str(error.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in text and "then pass its path as the model" in text
    assert "\n" not in text


def test_registered_alias_local_folder_and_devices(tiny_sd):
    model = load_sd(str(tiny_sd), device="cpu", dtype="bf16")
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu" and model.resolution == 16
    assert sorted(model.modules.keys()) == ["text_encoder", "unet"]
    with pytest.raises(lowdim.LowdimError, match="dtype must be"):
        load_sd(str(tiny_sd), dtype="fp8")


def test_out_of_memory_is_one_line_with_what_to_try_and_keeps_a_checkpoint(tiny_sd, refs, tmp_path, capsys,
                                                                             monkeypatch):
    from lowdim_sd import train as engine

    real = engine.denoising_losses

    def exhaust(m, s, c, step, *a, **k):
        if step == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(m, s, c, step, *a, **k)

    monkeypatch.setattr(engine, "denoising_losses", exhaust)
    args = ("train", "-m", tiny_sd, "-i", refs, "--steps", 4, "--out", tmp_path / "o")
    code, text = run(capsys, *args)
    assert code == 1 and "Traceback" not in text
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    assert "out of memory at step 2; checkpoint saved" in " ".join(lines)
    error = [line for line in lines if line.startswith("Error:")]
    assert len(error) == 1 and "out of GPU memory" in error[0] and "--batch-size" in error[0]
    monkeypatch.setattr(engine, "denoising_losses", real)
    code, text = run(capsys, *args, "--resume")
    assert code == 0, text
    assert "2 steps in" in text  # only the steps the out-of-memory stop had not done


def test_errors_that_are_not_out_of_memory_keep_their_traceback(monkeypatch):
    import lowdim_cli.main as cli_main

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli_main, "app", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["spaces"])
