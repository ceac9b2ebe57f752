"""`lowdim bench speed` reading an OUT someone else measured (review BV3, BV4, BV11): a damaged measurement or
settings.json is one line naming the file and the way out, on `--no-run` and on a resume alike; the table's labels
are the code's own, its medians and quartiles come from the samples, and speed.json stays JSON proper.

Every OUT here is built directly (settings.json from a Store's claim, measurements as the writer writes them), so
nothing is measured: the reader is what is tested."""

from __future__ import annotations

import html
import json
import re
import statistics

import pytest
from markdown_it import MarkdownIt

from lowdim_cli.main import main
from lowdim_sd.bench.speed import Store
from lowdim_sd.bench.speed_report import labels
from lowdim_sd.bench.speed_setup import SCALES, resolve_settings
from lowdim_sd.bench.speed_timing import record, skipped

QUICK = SCALES["quick"]
WAY_OUT = "delete it and rerun (without --no-run) to measure it again"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def out(tmp_path):
    """An OUT as `bench speed --quick --device cpu --only load,adapter-step` leaves it, crop skipped."""
    out = tmp_path / "speed-ci"
    store = Store(out)
    store.claim(resolve_settings(True, "cpu", "auto", None, None), overwrite=False)
    names = labels(QUICK)
    store.save("load", {**record(names["load"], [0.3]), "argv": ["lowdim", "bench", "speed"]})
    store.save("step_lidb", {**record(names["step_lidb"], [0.040, 0.036, 0.050]), "argv": None})
    store.save("step_lora_r1", {**record(names["step_lora_r1"], [0.030, 0.020]), "argv": None})
    store.save("crop", {**skipped(names["crop"], "no face detector"), "rerun": "--only crop", "argv": None})
    return out


def edit(out, key: str, **changes) -> None:
    """Set keys of a stored measurement (a value of ``...`` drops its key)."""
    path = out / "measurements" / f"{key}.json"
    entry = json.loads(path.read_text())
    for name, value in changes.items():
        if value is ...:
            entry.pop(name)
        else:
            entry[name] = value
    path.write_text(json.dumps(entry))


def no_run(out) -> int:
    return main(["bench", "speed", "--no-run", "-o", str(out)])


DAMAGED_MEASUREMENTS = {
    "not JSON": "{oops",
    "a list": "[1, 2]",
    "not UTF-8": b"\xff\xfe{",
    "no seconds": {"seconds": ...},
    "no samples": {"samples": ...},
    "seconds text": {"seconds": "fast"},
    "seconds a bool": {"seconds": True},
    "seconds negative": {"seconds": -1},
    "seconds NaN": '{"label": "x", "seconds": NaN, "samples": [0.04]}',
    "seconds Infinity": '{"label": "x", "seconds": Infinity, "samples": [0.04]}',
    "seconds 1e400": '{"label": "x", "seconds": 1e400, "samples": [0.04]}',
    "seconds not the median of the samples": {"seconds": 5.0},
    "samples text": {"samples": "abc"},
    "samples empty": {"samples": []},
    "a negative sample": {"samples": [0.04, -0.04, 0.05]},
    "a sample text": {"samples": [0.04, "0.036", 0.05]},
    "a sample a bool": {"samples": [True, 0.036, 0.05]},
    "label not text": {"label": 5},
    "no label": {"label": ...},
    "detail not a dict": {"detail": [1]},
    "detail holding NaN": '{"label": "x", "seconds": 0.04, "samples": [0.04], "detail": {"a": NaN}}',
    "argv not a list of text": {"argv": "lowdim bench speed"},
    "peak bytes negative": {"peak_bytes": -5},
    "skipped not text": {"skipped": 5},
}


def damage(out, how) -> None:
    path = out / "measurements" / "step_lidb.json"
    if isinstance(how, dict):
        edit(out, "step_lidb", **how)
    elif isinstance(how, bytes):
        path.write_bytes(how)
    else:
        path.write_text(how)


@pytest.mark.parametrize("how", DAMAGED_MEASUREMENTS.values(), ids=DAMAGED_MEASUREMENTS.keys())
def test_a_damaged_measurement_is_one_line_naming_it_and_nothing_is_written(out, capsys, how):
    damage(out, how)
    assert no_run(out) == 1
    line = one_line_error(capsys)
    assert f"{out / 'measurements' / 'step_lidb.json'}: damaged measurement (" in line and WAY_OUT in line
    assert not (out / "speed.json").exists() and not (out / "table.md").exists()


@pytest.mark.parametrize("how", ["{oops", {"seconds": "fast"}, {"samples": [float("nan")]}],
                         ids=["not JSON", "seconds text", "a NaN sample"])
@pytest.mark.parametrize("task", ["adapter-step", "merge"], ids=["its task", "another task"])
def test_a_resume_over_a_damaged_measurement_is_refused_before_measuring(out, capsys, how, task):
    damage(out, how)
    assert main(["bench", "speed", "--quick", "--device", "cpu", "-o", str(out), "--only", task]) == 1
    line = one_line_error(capsys)
    assert f"{out / 'measurements' / 'step_lidb.json'}: damaged measurement (" in line and WAY_OUT in line
    assert not (out / "model").exists()  # refused before the model was built


def test_a_skipped_entry_needs_its_reason(out, capsys):
    edit(out, "crop", skipped="")
    assert no_run(out) == 1
    assert f"{out / 'measurements' / 'crop.json'}: damaged measurement (" in one_line_error(capsys)


def test_labels_in_the_table_are_the_codes_not_the_files(out, capsys):
    hostile = "train step | <img src=x onerror=alert(1)> [click](http://evil.example) \x1b[31m"
    edit(out, "step_lidb", label=hostile)
    edit(out, "crop", label=hostile)
    assert no_run(out) == 0, capsys.readouterr().err
    table = (out / "table.md").read_text()
    speed = json.loads((out / "speed.json").read_text())
    for text in (table, json.dumps(speed)):
        assert "onerror" not in text and "evil.example" not in text
    names = labels(QUICK)
    row = next(line for line in table.splitlines() if line.startswith(f"| {names['step_lidb']} |"))
    assert row.count("|") == 6  # five cells, none added
    assert speed["measurements"]["step_lidb"]["label"] == names["step_lidb"]
    assert any(line.startswith(f"| {names['crop']} | - | skipped: no face detector") for line in table.splitlines())


def test_a_skipped_reason_adds_no_cell_tag_or_control_character_to_the_table(out, capsys):
    edit(out, "crop", skipped="gone | <img src=x onerror=alert(1)> \x1b[31mred")
    assert no_run(out) == 0, capsys.readouterr().err
    row = next(line for line in (out / "table.md").read_text().splitlines() if "skipped: gone" in line)
    assert "\x1b" not in row
    header = "| a | b | c | d | e |\n|---|---|---|---|---|\n"
    cells = re.findall(r"<td>(.*?)</td>", MarkdownIt("commonmark").enable("table").render(header + row + "\n"))
    assert len(cells) == 5 and "<" not in cells[2]  # one cell of text: no tag, no extra column
    assert html.unescape(cells[2]).startswith("skipped: gone | <img src=x onerror=alert(1)> \\x1b[31mred")


def test_a_skipped_reason_is_printed_as_its_text_not_rich_markup(out, capsys):
    """A reason holding rich's markup (`[/oops]`, `[bold]`) crashed the terminal table with a MarkupError."""
    edit(out, "crop", skipped="gone [/oops] [bold]x[/bold]")
    assert no_run(out) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out  # the narrow cell may wrap between words, or cut the last
    assert "[/oops]" in printed and "[bold]x" in printed


def test_the_median_and_quartiles_come_from_the_samples(out, capsys):
    edit(out, "step_lidb", p25=-7.0, p75=99.0)  # derived from the samples, so recomputed, not believed
    assert no_run(out) == 0, capsys.readouterr().err
    samples = [0.040, 0.036, 0.050]
    entry = json.loads((out / "speed.json").read_text())["measurements"]["step_lidb"]
    low, _, high = statistics.quantiles(samples, n=4)
    assert entry["seconds"] == statistics.median(samples) and (entry["p25"], entry["p75"]) == (low, high)
    row = next(line for line in (out / "table.md").read_text().splitlines() if line.startswith("| train step, LiDB"))
    assert f"| {low:.3g}–{high:.3g} |" in row and "99" not in row


def test_speed_json_is_json_proper(out, capsys):
    assert no_run(out) == 0, capsys.readouterr().err

    def refuse(constant):
        raise AssertionError(f"{constant} in speed.json")

    json.loads((out / "speed.json").read_text(), parse_constant=refuse)


DAMAGED_SETTINGS = {
    "resolution text": {"resolution": "big"},
    "resolution fractional": {"resolution": 16.5},
    "resolution not a multiple of 8": {"resolution": 12},
    "resolution a bool": {"resolution": True},
    "repeats zero": {"repeats": 0},
    "repeats text": {"repeats": "2"},
    "dtype unknown": {"dtype": "fp64"},
    "device markup": {"device": "cpu | <img src=x onerror=alert(1)>"},
    "device not text": {"device": 5},
    "scale not text": {"scale": ["quick"]},
    "machine holding NaN": '{"scale": "quick", "device": "cpu", "dtype": "fp32", "resolution": 16, "repeats": 2, '
                           '"machine": {"threads": NaN}}',
}


@pytest.mark.parametrize("how", DAMAGED_SETTINGS.values(), ids=DAMAGED_SETTINGS.keys())
def test_a_damaged_settings_file_is_one_line_naming_it(out, capsys, how):
    path = out / "settings.json"
    if isinstance(how, dict):
        path.write_text(json.dumps({**json.loads(path.read_text()), **how}))
    else:
        path.write_text(how)
    assert no_run(out) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {path}: damaged (") or f"{path}: damaged (" in line
    assert not (out / "speed.json").exists()
