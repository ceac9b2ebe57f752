"""A reduced `lowdim bench quality` on TinyFaces: it must keep the ordering the full run showed.

The full run (docs/results.md) used 50 held-out identities and 12 prompts; this one uses 3 and the
6 "[V] face" prompts, and only the fast rows, so that CI notices when a change breaks quality.
"""

from __future__ import annotations

import pytest
from lowdim_tinyfaces.folders import write_identities
from lowdim_tinyfaces.model_files import hypernet_path

from lowdim.registry import get_registry
from lowdim_sd.bench.quality import QualityJob, run_quality
from lowdim_sd.bench.report import aggregate

pytestmark = pytest.mark.slow
IDENTITY = "tinyfaces-identity"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    if not hypernet_path().exists():
        pytest.fail(f"the TinyFaces hypernetwork is missing: {hypernet_path()}")
    root = tmp_path_factory.mktemp("bench")
    identities = root / "heldout"
    write_identities(identities, 3, split="test", seed=0)
    prompts = list(get_registry().backends["tinyfaces"].value.bench_prompts[:6])
    job = QualityJob(identities=identities, out=root / "out", methods=["ours", "only-hyper", "no-hyper", "base"],
                     prompts=prompts, hypernet=hypernet_path(), sample_steps=20, device="cpu")
    rows, _ = aggregate(run_quality(job), job.methods)
    return {row.method: row for row in rows}


def test_every_row_scores_every_identity(table):
    assert all(row.identities == 3 and row.cells[IDENTITY].n == 3 for row in table.values())


def test_personalization_moves_identity_above_the_base_model(table):
    base = table["base"].cells[IDENTITY].mean
    for method in ("ours", "no-hyper"):
        assert table[method].cells[IDENTITY].mean > base + 0.1, method


def test_the_hypernetwork_start_helps_the_fast_finetune(table):
    assert table["ours"].cells[IDENTITY].mean > table["no-hyper"].cells[IDENTITY].mean


def test_ours_keeps_following_prompts(table):
    assert table["ours"].cells["tinyfaces-style"].mean >= 0.5


def test_the_adapter_file_is_small(table):
    assert 0 < table["only-hyper"].bytes < 64_000
