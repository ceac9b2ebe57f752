"""`lowdim eval`'s plumbing with several sources at once and pictures that are not square.

Each test holds a promise the single-source, square-picture tests could not tell apart from its opposite:
which of two settings wins, which side of a picture is measured, which score lands on which image.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lowdim.hookspecs import hookimpl
from lowdim.registry import Registry, use_registry
from lowdim_cli.main import main
from lowdim_sd.eval.folder import load_eval_set
from lowdim_sd.eval.job import TINYFACES_METRICS, EvalJob, nothing_scored, run_eval
from lowdim_sd.eval.report import load_metrics

pytestmark = pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")


def picture(seed: int, width: int, height: int) -> Image.Image:
    """Random pixels of the given shape (width x height), so no two pictures are alike."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def registry_of(**factories):
    """A registry holding these metrics, registered as a plugin would."""

    class Plugin:
        @staticmethod
        @hookimpl
        def register_metrics(register):
            for name, factory in factories.items():
                register(name, factory)

    return use_registry(Registry.from_plugins([Plugin]))


class _ByWidth:
    """Scores a picture by its width, so a score names the picture it belongs to; a 'dog' prompt is a miss."""

    name, column = "width", "Width"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def score(self, samples):
        return [None if "dog" in s.prompt else float(s.image.width) for s in samples]


class _Half(_ByWidth):
    name, column = "half", "Half"

    def score(self, samples):
        return [None if "dog" in s.prompt else 0.5 for s in samples]


class _NaN(_ByWidth):
    name, column = "nan", "NaN"

    def score(self, samples):
        return [float("nan") if "dog" in s.prompt else 0.25 for s in samples]


class _Never(_ByWidth):
    name, column = "never", "Never"

    def score(self, samples):
        return [None for _ in samples]


@pytest.fixture
def folder(tmp_path):
    """Three portrait/landscape pictures of different widths, a shared reference folder and a token in the file."""
    (tmp_path / "refs").mkdir()
    picture(10, 40, 56).save(tmp_path / "refs" / "me.png")
    picture(11, 56, 40).save(tmp_path / "other.png")
    picture(12, 48, 64).save(tmp_path / "mine.png")
    for i, (width, height) in enumerate([(40, 72), (88, 48), (56, 120)]):
        picture(i, width, height).save(tmp_path / f"{i}.png")
    (tmp_path / "prompts.json").write_text(json.dumps({"token": "abc", "references": ["refs"], "images": [
        {"image": "0.png", "prompt": "a sks face"},
        {"image": "1.png", "prompt": "a abc face at night"},
        {"image": "2.png", "prompt": "a sks dog", "references": ["mine.png"]}]}))
    return tmp_path


def sources(sample) -> list[str]:
    return [reference.info["source"] for reference in sample.references]


def test_references_and_token_from_the_command_line_win_over_the_prompts_file(folder):
    data = load_eval_set(folder, references=[folder / "other.png"], token="sks")
    first, second, third = data.samples
    assert sources(first) == sources(second) == [str(folder / "other.png")]  # not refs/me.png
    assert sources(third) == [str(folder / "mine.png")]  # an image's own references still win
    assert [s.token for s in data.samples] == ["sks"] * 3
    assert first.clean_prompt() == "a face"
    assert second.clean_prompt() == "a abc face at night"  # the file's token is not removed
    from_file = load_eval_set(folder)
    assert sources(from_file.samples[0]) == [str(folder / "refs" / "me.png")] and from_file.samples[0].token == "abc"


def test_the_smallest_side_is_the_short_one_and_a_huge_picture_keeps_its_shape(folder):
    picture(20, 8, 200).save(folder / "0.png")  # a strip: long enough, too thin
    picture(21, 3000, 2100).save(folder / "1.png")
    with pytest.warns(UserWarning) as caught:
        data = load_eval_set(folder)
    said = " | ".join(str(w.message) for w in caught)
    assert "8x200 pixels is too small (each side must be at least 16)" in said
    assert data.skipped == ["0.png"]
    shrunk = data.samples[0].image
    assert shrunk.width == 2048 and abs(shrunk.height - 2048 * 2100 / 3000) <= 1  # 2048x1434, not a 2048 square


def test_a_nan_score_is_a_miss_and_eval_json_stays_json(folder, tmp_path):
    out = tmp_path / "out"
    with registry_of(nan=_NaN):
        report = run_eval(EvalJob(folder=folder, metrics=("nan",), device="cpu"))
        assert main(["eval", str(folder), "--metrics", "nan", "--out", str(out), "--no-progress"]) == 0
    assert report.results[0].scores == [0.25, 0.25, None] and report.results[0].summary.misses == 1

    def refuse(constant):
        raise ValueError(f"eval.json holds {constant}, which is not JSON")

    saved = json.loads((out / "eval.json").read_text(), parse_constant=refuse)
    assert [image["scores"]["nan"] for image in saved["images"]] == [0.25, 0.25, None]
    assert "| 2.png | miss |" in (out / "eval.md").read_text()  # not "nan"


def test_a_metrics_own_device_wins_over_the_shared_one():
    with registry_of(width=_ByWidth):
        loaded, _ = load_metrics(("width",), {"width": {"device": "cpu"}}, {"device": "meta"})
        assert loaded["width"].device == "cpu"
        loaded, _ = load_metrics(("width",), {}, {"device": "meta"})
        assert loaded["width"].device == "meta"


def test_each_image_in_eval_json_and_eval_md_holds_its_own_scores(folder, tmp_path):
    out = tmp_path / "out"
    with registry_of(width=_ByWidth, half=_Half):
        assert main(["eval", str(folder), "--metrics", "width,half", "--out", str(out), "--no-progress"]) == 0
    saved = json.loads((out / "eval.json").read_text())
    assert [(im["image"], im["scores"]) for im in saved["images"]] == [
        ("0.png", {"width": 40.0, "half": 0.5}), ("1.png", {"width": 88.0, "half": 0.5}),
        ("2.png", {"width": None, "half": None})]
    per_image = (out / "eval.md").read_text().split("## Per image")[1]
    assert "| 0.png | 40.000 | 0.500 |" in per_image and "| 1.png | 88.000 | 0.500 |" in per_image


def test_the_tiny_picture_hint_names_the_smallest_picture(folder):
    picture(30, 32, 40).save(folder / "0.png")  # TinyFaces-sized, beside pictures over 64 px on their short side
    picture(31, 128, 96).save(folder / "1.png")
    picture(32, 160, 128).save(folder / "2.png")
    # The hint is only given where TinyFaces' metrics are registered to be named.
    with registry_of(never=_Never, **{name: _Never for name in TINYFACES_METRICS}):
        report = run_eval(EvalJob(folder=folder, metrics=("never",), device="cpu"))
        line = nothing_scored(report, ("never",))
    assert line is not None and "these are 32 px images, as TinyFaces draws them" in line
    assert ",".join(TINYFACES_METRICS) in line


def test_the_terminal_table_shows_scored_before_misses(folder, capsys):
    with registry_of(half=_Half):
        assert main(["eval", str(folder), "--metrics", "half", "--no-progress"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "Half" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == ["Half", "0.500", "2", "1"]  # scored 2, missed 1
