"""`lowdim bench speed`: the quick run's table and JSON, ratios from the measured seconds, resume, bad input."""

from __future__ import annotations

import dataclasses
import json
import statistics
from contextlib import contextmanager

import pytest
import torch

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.bench import speed_measures
from lowdim_sd.bench.speed import SpeedJob, Store, run_speed, tasks
from lowdim_sd.bench.speed_report import build_report
from lowdim_sd.bench.speed_setup import SCALES, Settings

QUICK = SCALES["quick"]
ALL_KEYS = [key for task in tasks(QUICK) for key in task.keys]


@contextmanager
def one_thread():
    """As the quick run measured: a resume with another thread count is refused as another machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `lowdim bench speed --quick` on the CPU, through the CLI: (output folder, printed text)."""
    out = tmp_path_factory.mktemp("speed") / "run"
    with one_thread():
        code = main(["bench", "speed", "--quick", "--device", "cpu", "--out", str(out)])
    assert code == 0
    return out


@pytest.mark.slow
def test_quick_run_measures_every_row_and_writes_table_and_json(quick_run):
    report = json.loads((quick_run / "speed.json").read_text())
    assert report["settings"] == {"scale": "quick", "device": "cpu", "dtype": "fp32", "resolution": 16,
                                  "repeats": QUICK.repeats}
    measurements = report["measurements"]
    assert sorted(measurements) == sorted(ALL_KEYS)
    for key, entry in measurements.items():
        if key == "finetune_graphs":  # CUDA graphs: a GPU-only row, said so on a CPU
            assert entry["skipped"] == "CUDA graphs need a CUDA GPU"
            continue
        if entry.get("skipped"):  # only the crop may be missing here, and only without a face detector
            assert key == "crop", entry
            continue
        assert entry["seconds"] == pytest.approx(statistics.median(entry["samples"])), key
        assert entry["seconds"] > 0 or key == "warmup", key  # a warm-up can cost nothing on a CPU
    assert measurements["finetune"]["detail"]["steps"] == QUICK.finetune_steps
    warmup = measurements["warmup"]  # the first run's cost beyond its steps' warm time, never negative
    assert warmup["detail"]["first_run_seconds"] > 0 and warmup["seconds"] == pytest.approx(max(
        0.0, warmup["detail"]["first_run_seconds"] - warmup["detail"]["first_run_steps"]
        * measurements["finetune"]["seconds"] / QUICK.finetune_steps))
    for key, checkpointing in (("memory", False), ("memory_gc", True)):  # Linux: the process's resident peak
        entry = measurements[key]
        assert entry["peak_bytes"] > 100 * 2**20 and entry["detail"]["peak_of"] == "peak resident memory of the process"
        assert entry["detail"]["gradient_checkpointing"] is checkpointing
    assert measurements["batched_k32"]["subjects_per_hour"] == pytest.approx(3600 * 32 / measurements[
        "batched_k32"]["seconds"])
    table = (quick_run / "table.md").read_text()
    for title in ("personalize, stage by stage", "DreamBooth", "lowdim against peft", "batched precompute",
                  "peak memory", "ratios"):
        assert title in table
    assert len([line for line in table.splitlines() if line.startswith("| ")]) >= len(ALL_KEYS) + len(
        report["ratios"])


@pytest.mark.slow
def test_quick_run_ratios_come_from_the_measured_seconds(quick_run):
    report = json.loads((quick_run / "speed.json").read_text())
    s = {key: entry["seconds"] for key, entry in report["measurements"].items()}
    ratios = {row["id"]: row["value"] for row in report["ratios"]}
    personalize = s["hyper_k4"] + s["merge"] + s["finetune"]
    assert report["derived"]["personalize"]["seconds"] == pytest.approx(personalize)
    assert report["derived"]["personalize_whole"]["seconds"] == pytest.approx(
        personalize + s["load"] + s["warmup"] + s["generate"])
    dreambooth = s["full_db"] / QUICK.finetune_steps * QUICK.dreambooth_steps
    assert ratios["dreambooth_vs_personalize"] == pytest.approx(dreambooth / personalize)
    assert ratios["lidb_vs_lora_r1"] == pytest.approx(s["step_lidb"] / s["step_lora_r1"])
    assert ratios["merged_vs_none"] == pytest.approx(s["infer_lidb_merged"] / s["infer_none"])
    assert ratios["infer_lowdim_vs_peft_r4"] == pytest.approx(s["infer_lowdim_r4"] / s["infer_peft_r4"])
    assert ratios["batched_k8_speedup"] == pytest.approx(8 * s["batched_k1"] / s["batched_k8"])
    peaks = {key: report["measurements"][key]["peak_bytes"] for key in ("memory", "memory_gc")}
    assert ratios["checkpointing_memory"] == pytest.approx(peaks["memory_gc"] / peaks["memory"])
    assert ratios["eager_vs_graphs"] is None and report["derived"]["personalize_graphs"]["seconds"] is None
    # the tiny models of the quick scale say nothing about SD1.5's goals: none is judged
    assert all(row["met"] is None for row in report["ratios"])


@pytest.mark.parametrize("graphed_losses, fallback, timed", [([1.0, 2.0], False, True), ([1.0, 2.5], False, False),
                                                       ([1.0, 2.0], True, False)])
def test_a_graphed_finetune_is_timed_only_when_its_steps_match_the_eager_ones(monkeypatch, graphed_losses, fallback,
                                                                               timed):
    import warnings

    runs = []

    def fake_train_run(ctx, model, trainable, steps, learning_rate, cuda_graphs=False, losses=None):
        runs.append((steps, cuda_graphs))
        if cuda_graphs and fallback:
            warnings.warn("--cuda-graphs: the UNet could not be captured (RuntimeError: x); it runs eagerly",
                          stacklevel=1)
        if losses is not None:
            losses.extend(graphed_losses if cuda_graphs else [1.0, 2.0])
        return 3.0

    monkeypatch.setattr(speed_measures, "train_run", fake_train_run)
    monkeypatch.setattr(speed_measures, "relaxed_start", lambda model, prediction: None)
    ctx = type("Ctx", (), {"device": torch.device("cuda"), "scale": QUICK, "model": lambda self: None,
                           "prediction": lambda self: None, "label": lambda self, key: key})()
    entry = speed_measures.measure_finetune_graphs(ctx)["finetune_graphs"]
    if timed:
        assert entry["seconds"] == 3.0 and entry["detail"]["loss_difference"] == 0.0
        assert runs[-1] == (QUICK.finetune_steps, True)
    elif fallback:  # nor is a model that ran eagerly after its capture failed
        assert entry["seconds"] is None and entry["skipped"].startswith("--cuda-graphs: the UNet could not be")
    else:  # a graph that computes something else is never reported as a time
        assert entry["seconds"] is None and entry["skipped"] == "graphed losses differ from eager by 25.0%"
        assert runs == [(speed_measures.GRAPHS_CHECK_STEPS, False), (speed_measures.GRAPHS_CHECK_STEPS, True)]


@pytest.mark.slow
def test_a_rerun_measures_only_what_is_missing_and_an_interrupt_keeps_the_rest(quick_run, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(quick_run, out)
    kept = {key: (out / "measurements" / f"{key}.json").read_text() for key in ALL_KEYS}
    for key in ("generate", "lora_db"):
        (out / "measurements" / f"{key}.json").unlink()

    def must_not_run(ctx):
        raise AssertionError("a stored measurement was measured again")

    for name in ("measure_load", "measure_crop", "measure_hypernet", "measure_merge", "measure_finetune",
                 "measure_full_dreambooth", "measure_batched"):
        monkeypatch.setattr(speed_measures, name, must_not_run)
    real_lora = speed_measures.measure_lora_dreambooth

    def interrupt(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(speed_measures, "measure_lora_dreambooth", interrupt)
    job = SpeedJob(out=out, quick=True, device="cpu")
    with one_thread():  # the machine quick_run was measured on
        table_only = run_speed(dataclasses.replace(job, run=False), progress=False)  # --no-run measures nothing
        assert "lora_db" not in table_only["measurements"]
        assert {row["id"]: row["value"] for row in table_only["ratios"]}["lora_db_vs_finetune"] is None
        with pytest.raises(KeyboardInterrupt, match="interrupted during 'lora-db'"):
            run_speed(job, progress=False)
        assert (out / "measurements" / "generate.json").is_file()  # measured before the interrupt, and kept
        assert not (out / "measurements" / "lora_db.json").exists()

        monkeypatch.setattr(speed_measures, "measure_lora_dreambooth", real_lora)
        report = run_speed(job, progress=False)
        assert sorted(report["measurements"]) == sorted(ALL_KEYS)
        for key, text in kept.items():
            if key not in ("generate", "lora_db"):
                assert (out / "measurements" / f"{key}.json").read_text() == text, key


def test_results_of_other_settings_are_refused_unless_overwritten(tmp_path):
    store = Store(tmp_path)
    store.claim(Settings("quick", "cpu", "fp32", 16, 2), overwrite=False)
    store.save("load", {"label": "model load", "seconds": 1.0, "samples": [1.0]})
    with pytest.raises(LowdimError, match="resolution 16 -> 24"):
        store.claim(Settings("quick", "cpu", "fp32", 24, 2), overwrite=False)
    assert store.done(("load",))
    store.claim(Settings("quick", "cpu", "fp32", 24, 2), overwrite=True)
    assert not store.done(("load",))


def _synthetic(seconds: dict[str, float | None]) -> dict[str, dict]:
    return {key: ({"label": key, "seconds": value, "samples": [value]} if value is not None else
                  {"label": key, "seconds": None, "skipped": "out of memory"}) for key, value in seconds.items()}


def test_ratios_and_goals_follow_the_seconds_given():
    full = SCALES["full"]
    seconds = dict.fromkeys(ALL_KEYS, 1.0) | {"step_lidb": 1.2, "hyper_k4": 0.5, "merge": 0.5, "finetune": 4.0,
                                              "full_db": 20.0, "batched_k1": 1.0, "batched_k8": 1.6,
                                              "batched_k16": None}
    gpu = build_report(Settings("full", "cuda:0", "fp16", 512, 5), full, _synthetic(seconds), {})
    rows = {row["id"]: row for row in gpu["ratios"]}
    assert rows["lidb_vs_lora_r1"]["value"] == pytest.approx(1.2) and rows["lidb_vs_lora_r1"]["met"] is False
    assert rows["dreambooth_vs_personalize"]["value"] == pytest.approx(20.0 * 30 / 5.0)
    assert rows["dreambooth_vs_personalize"]["met"] is True
    assert rows["batched_k8_speedup"]["value"] == pytest.approx(5.0) and rows["batched_k8_speedup"]["met"] is True
    assert rows["batched_k16_speedup"]["value"] is None  # skipped: no number made up for it
    assert rows["merged_vs_none"]["met"] is True
    cpu = build_report(Settings("full", "cpu", "fp32", 512, 5), full, _synthetic(seconds), {})
    cpu_rows = {row["id"]: row for row in cpu["ratios"]}
    assert cpu_rows["dreambooth_vs_personalize"]["met"] is None  # a GPU goal is not judged on a CPU
    assert cpu_rows["dreambooth_vs_personalize"]["unjudged"] == "not judged: a GPU goal"
    assert cpu_rows["lidb_vs_lora_r1"]["met"] is False


@pytest.mark.parametrize("args, message", [
    (["--device", "cpu", "--dtype", "fp16"], "fp16 on a CPU"),
    (["--device", "cpu", "--resolution", "500"], "multiple of 8"),
    (["--device", "cpu", "--dtype", "float8"], "--dtype must be one of"),
    (["--device", "cpu", "--repeats", "0"], "--repeats must be >= 1"),
    (["--device", "cpu", "--photo", "no-such-photo.png"], "no such file"),
])
def test_bad_options_are_one_line_before_anything_is_built(tmp_path, capsys, args, message):
    out = tmp_path / "speed"
    # --quick --only load: should a check regress, the run goes on to time one tiny model's load and the test
    # fails in seconds, rather than build and measure SD1.5 (or all of the tiny suite at 500 px) on the CPU
    # until the suite's timeout
    assert main(["bench", "speed", "--quick", "--only", "load", "--out", str(out), *args]) == 1
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not out.exists()


def test_only_names_known_tasks(tmp_path):
    with pytest.raises(LowdimError, match="unknown task 'peft'; choose from load, crop"):
        run_speed(SpeedJob(out=tmp_path / "speed", quick=True, device="cpu", only=("load", "peft")))
    assert not (tmp_path / "speed").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    out = str(tmp_path / "speed")
    assert main(["bench", "speed", "--quick", "--only", "load", "--device", "cuda", "--out", out]) == 1
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.slow
def test_without_peft_the_peer_rows_say_why_and_the_run_goes_on(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    out = tmp_path / "speed"
    run_speed(SpeedJob(out=out, quick=True, device="cpu", only=("peft-step",)))
    stored = [json.loads(path.read_text()) for path in out.rglob("*.json") if "step_" in path.name]
    assert len(stored) == 4 and all("peft is not installed" in entry["skipped"] for entry in stored)


def test_the_only_options_help_names_every_task():
    import inspect
    import typing

    from lowdim_cli.bench_speed_command import speed

    hint = typing.get_type_hints(speed, include_extras=True)["only"]
    if not hasattr(hint, "__metadata__"):  # Python 3.10 wraps Annotated[X | None, ...] = None in Optional[...]
        hint = next(arg for arg in typing.get_args(hint) if hasattr(arg, "__metadata__"))
    option = hint.__metadata__[0]
    named = inspect.cleandoc(option.help)
    for task in tasks(QUICK):
        assert (task.name if not task.name.startswith("precompute-k") else "precompute-k1") in named, task.name
