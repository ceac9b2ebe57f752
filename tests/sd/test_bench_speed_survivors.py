"""What `lowdim bench speed` times, tabulates and refuses, held in place where the quick CPU run cannot see it
(review DM's surviving mutants): which calls fall inside a timed span, the table's cells against speed.json,
goals that belong to a GPU, a task out of memory, and options refused before any model is built.

Timing is shown without wall time: the stand-ins move a fake clock by known amounts, so a sample holds exactly the
calls that were timed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lowdim_cli.main import main
from lowdim_sd.bench import speed, speed_measures, speed_timing
from lowdim_sd.bench.speed import SpeedJob, Store, Task, run_speed
from lowdim_sd.bench.speed_report import build_report, markdown
from lowdim_sd.bench.speed_setup import SCALES, Settings, resolve_settings

CPU = torch.device("cpu")
QUICK, FULL = SCALES["quick"], SCALES["full"]
FIRST_CALL = 100.0  # what a stand-in's first call (a warm-up, a load) costs: far from any timed call's cost


class FakeClock:
    """``time.perf_counter`` for the speed timers: time passes only when a stand-in spends it."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(speed_timing, "time", SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def stand_in_context(**parts) -> SimpleNamespace:
    """What a measure_* function reads of a SpeedContext, at the quick scale on the CPU; ``parts`` replace any."""
    base = dict(device=CPU, scale=QUICK, settings=Settings("quick", "cpu", "fp32", 16, 2), label=lambda key: key,
                prediction=lambda: None, drop_hypernet=lambda: None, drop_model=lambda: None)
    return SimpleNamespace(**(base | parts))


# ------------------------------------------------------------------------------------------- what is timed


def test_the_warm_up_calls_are_not_timed(clock):
    calls = []

    def call():
        calls.append(1)
        clock.spend(FIRST_CALL if len(calls) <= 2 else 1.0)

    assert speed_timing.time_calls(call, CPU, repeats=3, warmup=2) == [1.0, 1.0, 1.0]
    assert len(calls) == 5


def test_variants_side_by_side_keep_the_samples_of_every_round():
    def variant():
        return lambda: None, lambda: None

    samples = speed_timing.side_by_side({"a": variant, "b": variant}, CPU, rounds=3, repeats=2, warmup=0)
    assert {name: len(values) for name, values in samples.items()} == {"a": 6, "b": 6}


def test_on_a_gpu_the_clock_stops_only_once_the_queued_work_is_done(clock, monkeypatch):
    queued: list[float] = []

    def synchronize(device):  # a GPU's work runs after it is queued: synchronising waits for it
        clock.spend(sum(queued))
        queued.clear()

    monkeypatch.setattr(speed_timing, "synchronize", synchronize)
    timer = speed_timing.Clock(torch.device("cuda"))
    with timer.timed():
        queued.append(3.0)  # queuing costs nothing; the work takes 3 s
    assert timer.samples == [3.0]


def test_training_times_only_the_measured_steps_after_an_untimed_warm_up_run(monkeypatch):
    runs = []

    def train_run(ctx, model, trainable, steps, learning_rate, **options):
        runs.append(steps)
        return float(steps)  # a run's seconds: one per step

    monkeypatch.setattr(speed_measures, "train_run", train_run)
    samples = speed_measures.train_seconds(SimpleNamespace(scale=FULL), None, None, 40, 1e-3)
    assert runs == [FULL.warmup, 40] and samples == [40.0]


def test_the_generation_times_one_image_without_its_warm_up(clock, monkeypatch):
    import lowdim_sd.generate as generate_module

    drawn = []

    def generate(model, config):
        clock.spend((FIRST_CALL if not drawn else 0.0) + config.steps)  # the first call pays the set-up
        drawn.append(config.steps)

    monkeypatch.setattr(generate_module, "generate", generate)
    monkeypatch.setattr(speed_measures, "relaxed_start", lambda model, prediction: None)
    entry = speed_measures.measure_generate(stand_in_context(model=lambda: None))["generate"]
    assert drawn == [1, QUICK.sample_steps]
    assert entry["samples"] == [float(QUICK.sample_steps)]


def test_the_merge_times_no_model_load(clock, monkeypatch):
    def load_model():  # a load, or taking off the previous repeat's adapters
        clock.spend(FIRST_CALL)

    monkeypatch.setattr(speed_measures, "relaxed_start", lambda model, prediction: clock.spend(1.0))
    entry = speed_measures.measure_merge(stand_in_context(model=load_model))["merge"]
    assert entry["samples"] == [1.0, 1.0]  # the settings' 2 repeats, each only the merge


class IterationsNet(nn.Module):
    """A hypernetwork stand-in whose prediction costs one second per refinement iteration."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock, self.encoder, self.layers = clock, nn.Linear(1, 1), ["a"]

    def forward(self, image, iterations):
        self.clock.spend(float(iterations))

    def num_predicted(self) -> int:
        return 1


def test_each_hypernetwork_row_times_its_own_number_of_iterations(clock):
    ctx = stand_in_context(hypernet=lambda: IterationsNet(clock), image=lambda: None)
    found = speed_measures.measure_hypernet(ctx)
    assert set(found["hyper_k1"]["samples"]) == {1.0} and set(found["hyper_k4"]["samples"]) == {4.0}


@pytest.mark.parametrize("dtype, autocast", [("fp16", "fp16"), ("bf16", "bf16"), ("fp32", "no")])
def test_full_dreambooth_autocasts_in_the_runs_half_dtype(monkeypatch, dtype, autocast):
    import lowdim_sd.modes as modes

    seen = {}

    def train_seconds(ctx, model, trainable, steps, learning_rate, **options):
        seen.update(options)
        return [1.0]

    monkeypatch.setattr(speed_measures, "train_seconds", train_seconds)
    monkeypatch.setattr(modes, "FullTrainable", lambda model, train_text_encoder: None)
    ctx = stand_in_context(model=lambda dtype=None: None, settings=Settings("quick", "cpu", dtype, 16, 2))
    entry = speed_measures.measure_full_dreambooth(ctx)["full_db"]
    assert seen["mixed_precision"] == autocast and entry["detail"]["mixed_precision"] == autocast


@pytest.fixture(scope="module")
def tiny_context(tmp_path_factory):
    from lowdim_sd.bench.speed_setup import saved_model

    folder = saved_model(tmp_path_factory.mktemp("speed") / "model", QUICK)
    return speed_measures.SpeedContext(Settings("quick", "cpu", "fp32", 16, 2), QUICK, folder, None)


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1, 4])
def test_peft_row_takes_the_same_layers_as_lowdim_at_scale_1(tiny_context, rank):
    pytest.importorskip("peft")
    from lowdim.injection.select import select_layers
    from lowdim_sd.bench import speed_adapters

    model = tiny_context.model()
    lowdim_layers = {name for name, _ in select_layers(model.modules, speed_measures.LAYERS)}
    _, teardown = speed_adapters.peft_variant(tiny_context, rank, train=False)()
    try:
        wrapped = {name: module for name, module in model.modules.named_modules()
                   if hasattr(module, "base_layer") and hasattr(module, "scaling")}
        assert set(wrapped) == lowdim_layers
        assert {module.scaling[speed_adapters.BENCH] for module in wrapped.values()} == {1.0}
    finally:
        teardown()


# -------------------------------------------------------------------------------------------- the report


def full_report(device: str = "cuda", **seconds: float) -> dict:
    measured = {"hyper_k4": 0.5, "merge": 0.5, "finetune": 4.0, "full_db": 20.0, "step_lidb": 1.2,
                "step_lora_r1": 1.5} | seconds
    entries = {key: speed_timing.record(key, [value]) for key, value in measured.items()}
    return build_report(Settings("full", device, "fp16" if device == "cuda" else "fp32", 512, 5), FULL, entries, {})


def table_cells(table: str) -> dict[str, list[str]]:
    """table.md's rows by their first cell: [seconds, p25–p75, ratio, goal]."""
    rows = [line.strip().strip("|").split("|") for line in table.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows}


def test_full_dreambooths_total_is_its_measured_steps_scaled_to_1200():
    report = full_report()
    total = report["derived"]["full_db_extrapolated"]
    scaled = 20.0 * FULL.dreambooth_steps / FULL.finetune_steps
    assert total["seconds"] == pytest.approx(scaled)
    ratio = next(row for row in report["ratios"] if row["id"] == "dreambooth_vs_personalize")
    assert ratio["numerator"] == pytest.approx(total["seconds"])  # the total and the ratio beside it agree
    assert table_cells(markdown(report, FULL))[f"= {total['label']}"][0] == f"{scaled:.4g}"


def test_the_table_shows_the_jsons_numbers():
    report = full_report()  # LiDB / LoRA r=1 = 1.2 / 1.5: a ratio that is neither of its inputs
    table = table_cells(markdown(report, FULL))
    shown = [row for row in report["ratios"] if row["value"] is not None]
    assert any(row["id"] == "lidb_vs_lora_r1" for row in shown)
    for row in shown:
        assert table[row["label"]][2] == f"{row['value']:.4g}x", row["id"]
    spread = build_report(Settings("full", "cuda", "fp16", 512, 5), FULL,
                          {"load": speed_timing.record("load", [1.0, 2.0, 9.0])}, {})
    load = spread["measurements"]["load"]
    assert table_cells(markdown(spread, FULL))[load["label"]][:1] == [f"{load['seconds']:.4g}"] == ["2"]


@pytest.mark.parametrize("device, met, unjudged", [("cpu", None, "not judged: a GPU goal"), ("cuda", True, None)])
def test_the_k8_batched_goal_is_judged_only_on_a_gpu(device, met, unjudged):
    report = full_report(device, batched_k1=1.0, batched_k8=1.0)  # 8 x 1 s one after another / 1 s batched = 8
    row = next(row for row in report["ratios"] if row["id"] == "batched_k8_speedup")
    assert (row["met"], row["unjudged"]) == (met, unjudged)


# ----------------------------------------------------------------------------------- out of memory, options


def test_a_task_out_of_memory_is_stored_as_skipped_and_the_run_goes_on(tmp_path, monkeypatch):
    def out_of_memory(ctx):
        raise torch.OutOfMemoryError("stand-in")

    monkeypatch.setattr(speed, "saved_model", lambda folder, scale: folder)
    monkeypatch.setattr(speed, "tasks", lambda scale: [
        Task("full-db", ("full_db",), out_of_memory),
        Task("load", ("load",), lambda ctx: {"load": speed_timing.record("load", [0.5])})])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = run_speed(SpeedJob(out=tmp_path / "speed", quick=True, device="cpu"), progress=False)
    finally:
        torch.set_num_threads(threads)
    stored = json.loads((tmp_path / "speed" / "measurements" / "full_db.json").read_text())
    assert stored["skipped"] == "out of memory on cpu" and stored["rerun"] == "--only full-db"
    assert report["measurements"]["full_db"]["skipped"] == "out of memory on cpu"
    assert report["measurements"]["load"]["seconds"] == 0.5  # the task after it still ran


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bf16_on_a_cpu_without_bf16_instructions_is_one_line_before_any_model(tmp_path, capsys, monkeypatch):
    import lowdim_sd.devices as devices

    def build(folder, scale):
        raise AssertionError("a model was built")

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(speed, "saved_model", build)
    out = tmp_path / "speed"
    assert main(["bench", "speed", "--quick", "--device", "cpu", "--dtype", "bf16", "--out", str(out)]) == 1
    assert "no bf16 instructions" in one_line_error(capsys)
    assert not out.exists()


def test_no_run_with_quick_on_a_folder_measured_at_full_scale_is_one_line(tmp_path, capsys):
    out = tmp_path / "speed"
    store = Store(out)
    store.claim(resolve_settings(False, "cpu", "auto", None, None), overwrite=False)
    store.save("load", {"label": "model load", "seconds": 1.0, "samples": [1.0]})
    assert main(["bench", "speed", "--no-run", "--quick", "-o", str(out)]) == 1
    line = one_line_error(capsys)
    assert "--quick" in line and "scale full" in line
    assert not (out / "speed.json").exists()  # full-scale numbers are not tabulated as a quick run's
