"""The table of ``lowdim bench speed``: labels, sums and ratios, all computed from the measured seconds.

Every derived number is a sum or a ratio of stored medians, so anyone can check it from the JSON.
A ratio whose inputs are missing (skipped, out of memory) is None, never a guess.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from lowdim.option_words import counted
from lowdim_sd.bench.speed_setup import Scale, Settings
from lowdim_sd.markdown_cells import markdown_cell

# A side-by-side timing of two equal costs still differs by a few percent from run to run.
NOISE = 0.05


def labels(scale: Scale) -> dict[str, str]:
    steps, encoder = scale.finetune_steps, {"vit-h14": "ViT-H/14", "vit-tiny": "tiny ViT"}[scale.encoder]
    names = {
        "load": "model load (diffusers folder to device)",
        "crop": "face crop (detect, align, cut)",
        "hyper_k1": f"hypernetwork prediction k=1 ({encoder} + decoder)",
        "hyper_k4": f"hypernetwork prediction k=4 ({encoder} + decoder)",
        "merge": "merge the prediction, add LoRA r=4",
        "finetune": f"{steps} rank-relaxed finetune steps (warm)",
        "warmup": "first training run's one-time set-up (once per process)",
        "finetune_graphs": f"{steps} rank-relaxed steps, models replayed from CUDA graphs (capture included)",
        "generate": f"one {scale.sample_steps}-step generation (guided)",
        "memory": f"personalize path: prediction, merge, {scale.memory_steps} steps",
        "memory_gc": "the same with gradient checkpointing",
        "lora_db": f"{steps} LoRA DreamBooth steps (r=4)",
        "full_db": f"{steps} full DreamBooth steps (UNet + text encoder)",
        "step_lora_r1": "train step, LoRA r=1",
        "step_lidb": "train step, LiDB a=100 b=50 r=1",
        "infer_none": "UNet forward, no adapter",
        "infer_lidb_unmerged": "UNet forward, LiDB unmerged",
        "infer_lidb_merged": "UNet forward, LiDB merged",
    }
    for kind, what in (("step", "train step"), ("infer", "UNet forward")):
        for rank in (1, 4):
            names[f"{kind}_lowdim_r{rank}"] = f"{what}, lowdim LoRA r={rank}"
            names[f"{kind}_peft_r{rank}"] = f"{what}, peft LoRA r={rank}"
    for k in scale.subjects:
        names[f"batched_k{k}"] = f"precompute, {counted(k, 'subject')} in one batch ({scale.batch_steps} steps)"
    return names


def sections(scale: Scale) -> list[tuple[str, list[str]]]:
    """(title, measurement ids) in the order of the table."""
    kinds = [f"{kind}_{who}_r{rank}" for kind in ("step", "infer") for rank in (1, 4) for who in ("lowdim", "peft")]
    return [
        ("personalize, stage by stage", ["load", "crop", "hyper_k1", "hyper_k4", "merge", "finetune", "warmup",
                                         "finetune_graphs", "generate"]),
        ("DreamBooth, the same steps", ["lora_db", "full_db"]),
        ("adapter cost", ["step_lora_r1", "step_lidb", "infer_none", "infer_lidb_unmerged", "infer_lidb_merged"]),
        ("lowdim against peft, same layers", kinds),
        ("batched precompute", [f"batched_k{k}" for k in scale.subjects]),
        ("peak memory (seconds: the steps')", ["memory", "memory_gc"]),
    ]


@dataclass(frozen=True)
class Term:
    """``factor`` times the sum of the medians of ``keys``."""

    keys: tuple[str, ...]
    factor: float = 1.0

    def value(self, seconds: dict[str, float | None]) -> float | None:
        parts = [seconds.get(key) for key in self.keys]
        measured = [part for part in parts if part is not None]
        return self.factor * sum(measured) if len(measured) == len(parts) else None


@dataclass(frozen=True)
class Goal:
    op: str  # "<=", ">=" or "~" (equal within NOISE)
    bound: float
    device: str | None = None  # the goal holds on this device type only (cuda, cpu); None: anywhere
    dtype: str | None = None  # and in this dtype only (fp16); None: any
    unit: str = ""  # " s" for a total in seconds; a ratio has none

    def text(self) -> str:
        where = [{"cuda": "GPU", "cpu": "CPU"}[self.device]] if self.device else []
        where += [self.dtype] if self.dtype else []
        sign = {"<=": "≤", ">=": "≥"}.get(self.op)
        bound = f"{self.bound:g}" if self.bound == int(self.bound) else f"{self.bound:.2f}"
        shown = f"1.00 ± {NOISE:.2f}" if self.op == "~" else f"{sign} {bound}{self.unit}"
        return shown + (f" ({', '.join(where)})" if where else "")

    def unjudged(self, value: float | None, settings: Settings) -> str | None:
        """Why the goal is not judged here, or None: goals hold at SD1.5 scale, on their own device and dtype."""
        if value is None:
            return "not measured"
        if settings.scale != "full":
            return "not judged at the quick scale"
        if self.device and self.device != settings.device.split(":")[0]:
            return f"not judged: a {'GPU' if self.device == 'cuda' else 'CPU'} goal"
        if self.dtype and self.dtype != settings.dtype:
            return f"not judged: an {self.dtype} goal"
        return None

    def met(self, value: float | None, settings: Settings) -> bool | None:
        if value is None or self.unjudged(value, settings):  # unjudged: None is "not measured"
            return None
        if self.op == "~":
            return abs(value - self.bound) <= NOISE
        return value <= self.bound if self.op == "<=" else value >= self.bound


# Issue 18's headline: personalize (prediction, merge, the finetune steps) in 5 s on an H100/H200 in fp16.
PERSONALIZE_GOAL = Goal("<=", 5, "cuda", "fp16", " s")


def derived(scale: Scale) -> dict[str, tuple[str, Term, Goal | None]]:
    """Sums the table shows under the measurements: the personalize totals and DreamBooth's 1,200 steps."""
    steps, full = scale.finetune_steps, scale.dreambooth_steps
    return {
        "personalize": (f"personalize: prediction k=4 + merge + {steps} steps", Term(("hyper_k4", "merge",
                                                                                      "finetune")),
                        PERSONALIZE_GOAL),
        # The crop runs on the CPU whatever the device, and needs the faces extra: left out of the sum.
        "personalize_whole": ("whole path: load, prediction, merge, set-up, steps, one generation (no crop)",
                              Term(("load", "hyper_k4", "merge", "warmup", "finetune", "generate")), None),
        "personalize_graphs": (f"personalize with --cuda-graphs: prediction k=4 + merge + {steps} steps",
                               Term(("hyper_k4", "merge", "finetune_graphs")), PERSONALIZE_GOAL),
        "full_db_extrapolated": (f"full DreamBooth, {full:,} steps ({steps} measured x {full / steps:g})",
                                 Term(("full_db",), full / steps), None),
    }


def ratios(scale: Scale) -> list[tuple[str, str, Term, Term, Goal | None]]:
    """(id, label, numerator, denominator, goal)."""
    steps = scale.finetune_steps
    rows = [
        ("dreambooth_vs_personalize", f"full DreamBooth {scale.dreambooth_steps:,} steps / personalize",
         Term(("full_db",), scale.dreambooth_steps / steps), Term(("hyper_k4", "merge", "finetune")),
         Goal(">=", 40, "cuda")),
        ("dreambooth_vs_personalize_graphs", f"full DreamBooth {scale.dreambooth_steps:,} steps (eager) / "
         "personalize with --cuda-graphs", Term(("full_db",), scale.dreambooth_steps / steps),
         Term(("hyper_k4", "merge", "finetune_graphs")), Goal(">=", 40, "cuda")),
        ("eager_vs_graphs", f"{steps} rank-relaxed steps, eager / CUDA graphs", Term(("finetune",)),
         Term(("finetune_graphs",)), None),
        ("lora_db_vs_finetune", f"{steps} LoRA DreamBooth steps / {steps} rank-relaxed steps", Term(("lora_db",)),
         Term(("finetune",)), None),
        ("lidb_vs_lora_r1", "train step, LiDB / LoRA r=1", Term(("step_lidb",)), Term(("step_lora_r1",)),
         Goal("<=", 1.10)),
        ("merged_vs_none", "UNet forward, LiDB merged / no adapter", Term(("infer_lidb_merged",)),
         Term(("infer_none",)), Goal("~", 1.0)),
        ("unmerged_vs_none", "UNet forward, LiDB unmerged / no adapter", Term(("infer_lidb_unmerged",)),
         Term(("infer_none",)), None),
    ]
    for kind, what in (("step", "train step"), ("infer", "UNet forward")):
        for rank in (1, 4):
            rows.append((f"{kind}_lowdim_vs_peft_r{rank}", f"{what}, lowdim / peft LoRA r={rank}",
                         Term((f"{kind}_lowdim_r{rank}",)), Term((f"{kind}_peft_r{rank}",)), Goal("<=", 1 + NOISE)))
    # On a GPU, >= 4x subjects per hour at K = 8 (docs/benchmarks.md). The CPU goal (>= 4x at K = 16) is
    # bench_batched_subjects.py's, on a tiny model.
    goals = {8: Goal(">=", 4, "cuda")}
    for k in scale.subjects:
        if k > 1:  # K subjects one after another take K times one subject's run: the runs are identical
            rows.append((f"batched_k{k}_speedup", f"subjects per hour, K={k} in one batch / one after another",
                         Term(("batched_k1",), k), Term((f"batched_k{k}",)), goals.get(k)))
    return rows


def memory_ratios() -> list[tuple[str, str, Term, Term, Goal | None]]:
    """Ratios of peak bytes (not seconds): what gradient checkpointing saves."""
    return [("checkpointing_memory", "peak memory, gradient checkpointing / without", Term(("memory_gc",)),
             Term(("memory",)), None)]


def build_report(settings: Settings, scale: Scale, measurements: dict[str, dict], machine: dict | None) -> dict:
    """Everything the table shows, as the JSON stores it; ``machine``: what measured it (None: not recorded).
    Each measurement's label is this code's: a stored one may come from someone else's file."""
    names = labels(scale)
    measurements = {key: {**entry, "label": names.get(key, key)} for key, entry in measurements.items()}
    seconds = {key: value.get("seconds") for key, value in measurements.items()}
    peaks = {key: value.get("peak_bytes") for key, value in measurements.items()}
    sums = {key: {"label": label, "seconds": term.value(seconds), "sum_of": list(term.keys), "factor": term.factor,
                  **_judged(goal, term.value(seconds), settings)}
            for key, (label, term, goal) in derived(scale).items()}
    rows = []
    for (key, label, top, bottom, goal), of in [*((row, seconds) for row in ratios(scale)),
                                                *((row, peaks) for row in memory_ratios())]:
        num, den = top.value(of), bottom.value(of)
        value = _ratio(num, den)
        rows.append({"id": key, "label": label, "value": value, "numerator": num, "denominator": den,
                     **_judged(goal, value, settings)})
    for k in scale.subjects:
        measured = measurements.get(f"batched_k{k}", {}).get("seconds")
        if measured:
            measurements[f"batched_k{k}"]["subjects_per_hour"] = 3600 * k / measured
    return {"settings": settings.to_dict(), "scale": asdict(scale), "machine": machine,
            "runs": runs(measurements), "measurements": measurements, "derived": sums, "ratios": rows}


def _ratio(num: float | None, den: float | None) -> float | None:
    """``num / den``; None when either is missing, or when a denominator near 0 (only a hand-made one) makes it
    infinite, which JSON cannot hold."""
    value = num / den if num is not None and den else None
    return value if value is None or math.isfinite(value) else None


def _judged(goal: Goal | None, value: float | None, settings: Settings) -> dict:
    return {"goal": goal.text() if goal else None, "met": goal.met(value, settings) if goal else None,
            "unjudged": goal.unjudged(value, settings) if goal else None}


def runs(measurements: dict[str, dict]) -> list[dict]:
    """The commands that measured what the folder holds, each with its measurements (argv None: made before
    commands were recorded)."""
    found: dict[str, dict] = {}
    for key, entry in measurements.items():
        argv = entry.get("argv")
        found.setdefault(json.dumps(argv), {"argv": argv, "measured": []})["measured"].append(key)
    return list(found.values())


class FromFile(str):
    """A cell's text read from a measurement file, which may be anyone's (a skipped row's reason): table.md shows it
    as the text it is, never as markup or another cell; the code's own labels, numbers and goals are markdown."""


def table_rows(report: dict, scale: Scale) -> list[tuple[str, list[list[str]]]]:
    """(section title, rows of [measurement, seconds, p25–p75, ratio, goal]) for the terminal and markdown."""
    measurements = report["measurements"]

    def cells(key: str, entry: dict) -> list[str]:
        if entry.get("skipped"):
            rerun = f"; a rerun with {entry['rerun']} retries it" if entry.get("rerun") else ""
            return [names[key], "-", FromFile(f"skipped: {entry['skipped']}{rerun}"), "", ""]
        spread = f"{entry['p25']:.3g}–{entry['p75']:.3g}" if len(entry.get("samples", [])) > 1 else ""
        if entry.get("peak_bytes"):
            spread = f"peak {entry['peak_bytes'] / 2**30:.2f} GiB"
        return [names[key], f"{entry['seconds']:.4g}", spread, "", ""]

    names = labels(scale)
    out = []
    for title, keys in sections(scale):  # a row not measured yet (--only, a timeout) still shows, as such
        out.append((title, [cells(key, measurements[key]) if key in measurements
                            else [names[key], "not measured", "", "", ""] for key in keys]))
    sums = [[f"= {entry['label']}", _number(entry["seconds"]), "", "", _goal(entry)]
            for entry in report["derived"].values()]
    out.append(("totals", sums))
    out.append(("ratios", [[row["label"], "", "", _number(row["value"], "x"), _goal(row)] for row in report["ratios"]]))
    return out


def _number(value: float | None, unit: str = "") -> str:
    return "not measured" if value is None else f"{value:.4g}{unit}"


def _goal(row: dict) -> str:
    if not row.get("goal"):  # (a speed.json written before totals had goals has none)
        return ""
    verdict = {True: "met", False: "NOT met", None: row.get("unjudged")}[row["met"]]
    return f"{row['goal']}: {verdict}"


def markdown(report: dict, scale: Scale) -> str:
    settings = report["settings"]
    lines = [f"lowdim bench speed: scale {settings['scale']}, {settings['device']}, {settings['dtype']}, "
             f"{settings['resolution']} px", "", "| measurement | seconds | p25–p75 | ratio | goal |",
             "|---|---:|---:|---:|---|"]
    for title, rows in table_rows(report, scale):
        lines.append(f"| **{title}** | | | | |")
        lines += ["| " + " | ".join(markdown_cell(text) if isinstance(text, FromFile) else text for text in row) + " |"
                  for row in rows]
    return "\n".join(lines) + "\n"

