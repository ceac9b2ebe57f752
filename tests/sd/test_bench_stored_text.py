"""The bench folders' last unchecked reads (FBH): the texts a stored file puts into a line, and the speed model's
marker. A `bench speed` settings.json `machine`, a `bench quality` settings.json `model` and OUT/model's
lowdim-speed-model.json may come from someone else; a damaged one is one line naming the file, the key and the
value (escaped: a newline in it would split the line), exit 1, no traceback, on `--no-run` and on a resume alike.

The folders are built directly, as their writers write them: nothing is measured or trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from lowdim_cli.main import main
from lowdim_sd.bench import speed
from lowdim_sd.bench.speed import Store
from lowdim_sd.bench.speed_report import labels
from lowdim_sd.bench.speed_setup import READY, SCALES, resolve_settings
from lowdim_sd.bench.speed_timing import record

QUICK = SCALES["quick"]


def one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("Warning:")]
    assert len(err) == 1, err
    return err[0]


# ------------------------------------------------------------------------------------------------ bench speed


@pytest.fixture
def speed_out(tmp_path):
    """An OUT as `bench speed --quick --device cpu --only merge` leaves it, on this machine (a resume with
    --only load has a task to run)."""
    out = tmp_path / "speed"
    store = Store(out)
    store.claim(resolve_settings(True, "cpu", "auto", None, None), overwrite=False)
    store.save("merge", {**record(labels(QUICK)["merge"], [0.3]), "argv": None})
    return out


def resume(out: Path) -> int:
    return main(["bench", "speed", "--quick", "--device", "cpu", "-o", str(out), "--only", "load"])


def no_run(out: Path) -> int:
    return main(["bench", "speed", "--no-run", "-o", str(out)])


def set_machine(out: Path, **values) -> Path:
    path = out / "settings.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "machine": {**stored["machine"], **values}}))
    return path


DAMAGED_MACHINES = {
    "a GPU name of two lines": ("gpu", "NVIDIA H100\nthreads 64"),
    "a control character": ("torch", "2.4.0\x1b[31m"),
    "a huge platform": ("platform", "Linux-" + "x" * 5000),
    "a package version as a number": ("diffusers", 5),
    "threads as text": ("threads", "4"),
    "threads a bool": ("threads", True),
    "threads zero": ("threads", 0),
    "a GPU name as a list": ("gpu", ["NVIDIA H100"]),
}


@pytest.mark.parametrize(("key", "value"), DAMAGED_MACHINES.values(), ids=DAMAGED_MACHINES.keys())
@pytest.mark.parametrize("command", [no_run, resume], ids=["--no-run", "a resume"])
def test_a_machine_value_that_is_no_one_line_text_is_one_line_naming_it(speed_out, capsys, key, value, command):
    path = set_machine(speed_out, **{key: value})
    assert command(speed_out) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {path}: damaged (machine {key!r} is {repr(value)[:20]}"), line
    assert not (speed_out / "speed.json").exists() and not (speed_out / "model").exists()


def test_the_machine_this_lowdim_records_is_tabulated_and_resumed(speed_out, capsys, monkeypatch):
    """The reader refuses no machine the writer records: a GPU's name, a package missing (None), an empty processor
    (platform.processor() may be ''), a non-ASCII name."""
    # The resume's load is a stand-in: what is tested is that the stored machine is read and matched, not the timing.
    monkeypatch.setattr(speed, "saved_model", lambda folder, scale: folder)
    monkeypatch.setattr(speed.measures, "measure_load", lambda context: {"load": record("model load", [0.1])})
    recorded = {"gpu": None, "peft": None, "processor": "", "platform": "Linux-6.1-x86_64 (Ünïcode) – test"}
    set_machine(speed_out, **recorded)
    assert no_run(speed_out) == 0, capsys.readouterr().err
    assert json.loads((speed_out / "speed.json").read_text())["machine"].items() >= recorded.items()
    assert resume(speed_out) == 0, capsys.readouterr().err


DAMAGED_MARKERS = {
    "not JSON": ("{oops", "Expecting"),
    "not UTF-8": (b"\xff\xfe{", "utf-8"),
    "a list": ("[1]", "scale"),
    "no scale": ("{}", "scale"),
    "scale a number": ('{"scale": 5}', "scale is 5"),
    "scale a list": ('{"scale": ["quick"]}', "scale is ['quick']"),
    "an unknown scale": ('{"scale": "huge\\nscale"}', "scale is 'huge\\nscale'"),
}


@pytest.mark.parametrize(("text", "named"), DAMAGED_MARKERS.values(), ids=DAMAGED_MARKERS.keys())
def test_a_damaged_model_marker_is_one_line_naming_it_and_builds_no_model(speed_out, capsys, text, named):
    marker = speed_out / "model" / READY
    marker.parent.mkdir()
    marker.write_bytes(text) if isinstance(text, bytes) else marker.write_text(text)
    assert resume(speed_out) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {marker}: damaged (") and named in line, line
    assert "delete it" in line, line
    assert not (speed_out / "model" / "model_index.json").exists()  # nothing built over it


def test_a_marker_of_the_other_scale_is_no_damage_the_model_is_built_again(speed_out, capsys):
    marker = speed_out / "model" / READY
    marker.parent.mkdir()
    marker.write_text('{"scale": "full"}')  # --model-dir shared with a full run: this scale's model is built
    assert resume(speed_out) == 0, capsys.readouterr().err
    assert json.loads(marker.read_text()) == {"scale": "quick"}
    assert (speed_out / "model" / "model_index.json").is_file()


# ---------------------------------------------------------------------------------------------- bench quality


@pytest.fixture
def quality_out(tmp_path):
    from test_bench_results_checked import results_folder  # tests/sd: a results folder as a run writes it

    return results_folder(tmp_path)


DAMAGED_MODELS = {
    "empty": "",
    "two lines": "tinyfaces\nsd15",
    "a control character": "tinyfaces\x1b[31m",
    "a NUL": "models/tiny\x00faces",
    "huge": "x" * 5000,
    "a folder name past any file system's": "models/" + "x" * 300,
}


def set_model(out: Path, model: str) -> Path:
    path = out / "settings.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "model": model}))
    return path


@pytest.mark.parametrize("model", DAMAGED_MODELS.values(), ids=DAMAGED_MODELS.keys())
def test_a_model_that_is_no_model_name_is_one_line_naming_settings_json(quality_out, capsys, model):
    path = set_model(quality_out, model)
    assert main(["bench", "quality", "-o", str(quality_out), "--no-run"]) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {path}: damaged (model is {repr(model)[:20]}"), line
    assert not (quality_out / "table.md").exists() and not (quality_out / "table.json").exists()


def test_a_resume_over_a_damaged_model_is_refused_naming_it(quality_out, tmp_path, capsys):
    path = set_model(quality_out, "tinyfaces\nsd15")
    identities = tmp_path / "identities"
    identities.mkdir()
    Image.new("RGB", (16, 16)).save(identities / "id-0.png")
    stored = json.loads(path.read_text())
    command = ["bench", "quality", "-i", str(identities), "-o", str(quality_out), "--methods", "base",
               "--metrics", ",".join(stored["metrics"]), "--sample-steps", str(stored["sample_steps"])]
    for prompt in stored["prompts"]:
        command += ["--prompt", prompt]
    assert main(command) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {path}: damaged (model is 'tinyfaces\\nsd15'"), line


@pytest.mark.parametrize("dtype", ["fp32\nfp16", "float64", ""], ids=["two lines", "no dtype of lowdim's", "empty"])
def test_a_dtype_that_is_no_dtype_is_one_line_naming_settings_json(quality_out, capsys, dtype):
    """Tabulating takes the stored dtype as the job's, whose check quoted it as the command's --dtype, newline and
    all."""
    path = quality_out / "settings.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "dtype": dtype}))
    assert main(["bench", "quality", "-o", str(quality_out), "--no-run"]) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {path}: damaged (dtype is {dtype!r}"), line
    assert "--dtype" not in line, line


def test_a_model_folder_with_spaces_and_letters_of_any_language_is_tabulated(quality_out, capsys):
    set_model(quality_out, "/data/models/Stable Diffusion (Jürgen's) 1.5")
    assert main(["bench", "quality", "-o", str(quality_out), "--no-run"]) == 0, capsys.readouterr().err
    assert json.loads((quality_out / "table.json").read_text())["settings"]["model"].endswith("(Jürgen's) 1.5")
