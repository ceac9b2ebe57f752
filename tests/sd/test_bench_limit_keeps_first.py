"""``lowdim bench quality --limit N`` runs the first N identities by name, the documented choice: a user who
grows N later (or compares two runs with different N) keeps the identities already scored."""

from __future__ import annotations

from PIL import Image

from lowdim_sd.bench.quality import plan
from lowdim_sd.bench.quality_job import QualityJob


def test_limit_plans_the_first_identities_by_name(tmp_path):
    references = tmp_path / "refs"
    references.mkdir()
    for name in ("dora", "alan", "cleo", "bert"):  # written out of order: the folder's order must not matter
        Image.new("RGB", (8, 8)).save(references / f"{name}.png")
    job = QualityJob(identities=references, methods=["base"], limit=2)

    planned = {task.identity for task in plan(job)}

    assert planned == {"alan", "bert"}


def test_no_limit_plans_every_identity(tmp_path):
    references = tmp_path / "refs"
    references.mkdir()
    for name in ("dora", "alan", "cleo"):
        Image.new("RGB", (8, 8)).save(references / f"{name}.png")

    planned = {task.identity for task in plan(QualityJob(identities=references, methods=["base"]))}

    assert planned == {"alan", "cleo", "dora"}
