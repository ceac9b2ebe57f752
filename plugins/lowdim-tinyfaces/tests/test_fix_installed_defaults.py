"""The dev scripts a wheel ships (quality, metrics.train, train_model) never write into site-packages by default:
installed, quality's report goes to the current folder, and the two training scripts refuse in one line without a
folder of their own; from the checkout they keep their defaults. quality's grid holds one row per style for any
``--per-style`` (review FG 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lowdim_tinyfaces import model_files, quality, train_model
from lowdim_tinyfaces.metrics import train as metrics_train
from lowdim_tinyfaces.metrics.nets import WEIGHTS_DIR
from lowdim_tinyfaces.model_files import model_path
from lowdim_tinyfaces.styles import STYLES
from PIL import Image

PACKAGE = Path(train_model.__file__).resolve().parent
TRAIN_MODEL_REQUIRED = ["--out", "run", "--budget-minutes", "1"]


@pytest.fixture
def installed(monkeypatch):
    """The package as a wheel installs it: no checkout of lowdim-tinyfaces above its folder."""
    monkeypatch.setattr(model_files, "in_its_checkout", lambda: False)


def refusal(capsys, parse) -> str:
    """The one error line a script's argument parser refused with (exit 2), after argparse's usage."""
    with pytest.raises(SystemExit) as stopped:
        parse()
    assert stopped.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1, errors
    return errors[0]


def test_the_package_knows_its_checkout_from_an_installed_copy(tmp_path):
    assert model_files.in_its_checkout()  # these tests run from the checkout
    site = tmp_path / "site-packages" / "lowdim_tinyfaces"
    site.mkdir(parents=True)
    assert not model_files.in_its_checkout(site)
    (tmp_path / "site-packages" / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    assert not model_files.in_its_checkout(site)
    (tmp_path / "site-packages" / "pyproject.toml").write_text('[project]\nname = "lowdim-tinyfaces"\n')
    assert model_files.in_its_checkout(site)


def test_installed_quality_writes_its_report_in_the_current_folder(installed):
    out = quality.parse_arguments([]).out
    assert out.resolve() == Path.cwd().resolve()
    assert quality.parse_arguments(["--out", "mine"]).out == Path("mine")


def test_from_the_checkout_the_scripts_keep_their_defaults():
    assert quality.parse_arguments([]).out == PACKAGE.parent / "docs"
    assert metrics_train.parse_arguments([]).weights_dir == WEIGHTS_DIR
    assert train_model.parse_arguments(TRAIN_MODEL_REQUIRED).model_dir == model_path()


@pytest.mark.parametrize(("parse", "flag"), [
    (lambda: metrics_train.parse_arguments([]), "--weights-dir"),
    (lambda: train_model.parse_arguments(TRAIN_MODEL_REQUIRED), "--model-dir"),
])
def test_installed_training_scripts_refuse_to_overwrite_the_shipped_files(installed, capsys, parse, flag):
    line = refusal(capsys, parse)
    assert flag in line and "installed" in line and str(PACKAGE) in line


def test_installed_training_scripts_write_where_they_are_told(installed, tmp_path):
    assert metrics_train.parse_arguments(["--weights-dir", str(tmp_path)]).weights_dir == tmp_path
    assert train_model.parse_arguments([*TRAIN_MODEL_REQUIRED, "--model-dir", str(tmp_path)]).model_dir == tmp_path


@pytest.mark.parametrize("per_style", [0, -3])
def test_quality_refuses_no_samples_in_one_line(capsys, per_style):
    line = refusal(capsys, lambda: quality.parse_arguments(["--per-style", str(per_style)]))
    assert "--per-style must be >= 1" in line


def fake_report(per_style: int) -> dict:
    return {"per_style": per_style, "style_accuracy": dict.fromkeys(STYLES, 1.0), "style_gate_passed": True,
            "photo_mean_pairwise_identity_cosine": {"generated": 0.1, "real": 0.2}, "diversity_gate_passed": True}


@pytest.mark.parametrize("per_style", [1, 2, 6, 7, 8, 9])
def test_quality_writes_one_grid_row_per_style_for_any_per_style(tmp_path, per_style):
    generator = torch.Generator().manual_seed(per_style)
    samples = {style: torch.rand(per_style, 3, 8, 8, generator=generator) * 2 - 1 for style in STYLES}
    quality.write_report(fake_report(per_style), samples, tmp_path)

    assert {path.name for path in tmp_path.iterdir()} == {"quality.json", "quality.md", "quality_grid.png"}
    with Image.open(tmp_path / "quality_grid.png") as grid:
        one_row = quality_grid_height(tmp_path, per_style, rows=1)
        assert grid.height == quality_grid_height(tmp_path, per_style, rows=len(STYLES)) > one_row


def quality_grid_height(tmp_path: Path, per_style: int, rows: int) -> int:
    """The height of a grid of ``rows`` rows of the report's pictures, one style per row, drawn alone."""
    from lowdim_sd.grid import save_grid

    columns = min(8, per_style)
    images = [Image.new("RGB", (8, 8))] * (rows * columns)
    path = save_grid(tmp_path / f"rows-{rows}" / "grid.png", images, ncol=columns,
                     row_labels=[quality.prompt_for(style) for style in STYLES[:rows]], cell=64)
    with Image.open(path) as grid:
        return grid.height
