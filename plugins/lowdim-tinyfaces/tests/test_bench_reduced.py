"""A reduced `lowdim bench quality` on TinyFaces: it must keep the ordering the full run showed.

The full run (docs/results.md, on the shipped model) scored 13 rows on 50 held-out identities;
this one runs the fast rows (Ours with the words drawn whole, with its parts apart, with its UNet part
ending at 80% of the steps, and with that part's cross-attention at a quarter) on the first 3
of the same identities with the same prompts and seeds, and checks the orderings the full run showed, so
that CI notices when a change breaks quality.
"""

from __future__ import annotations

import pytest
from lowdim_tinyfaces.folders import write_identities
from lowdim_tinyfaces.model_files import hypernet_path

from lowdim_sd.bench.quality import QualityJob, run_quality
from lowdim_sd.bench.report import aggregate

pytestmark = pytest.mark.slow
IDENTITY = "tinyfaces-identity"
APART = "ours-described@te=0@start=0.3"  # that row's own file drawn with its parts apart: only a drawing more
WINDOW = "ours-described@te=0@start=0.3@end=0.8"  # the same, the base UNet finishing the last 20% of the steps
CROSS = WINDOW + "@ca=0.25"  # the same, the UNet part's cross-attention layers at a quarter of their scale


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    if not hypernet_path().exists():
        pytest.fail(f"the TinyFaces hypernetwork is missing: {hypernet_path()}")
    root = tmp_path_factory.mktemp("bench")
    identities = root / "heldout"
    write_identities(identities, 50, split="test", seed=0)  # the full run's identities; we use 3
    # One process of one thread: under pytest -n 2 the other core runs other tests, so a second bench worker here
    # (125 s alone, against 185 s for one process of two threads) only made three processes share two cores.
    job = QualityJob(identities=identities, out=root / "out", methods=["ours-described", "only-hyper", "no-hyper",
                                                                   "base", "only-hyper-unet", APART, WINDOW,
                                                                   CROSS],
                     hypernet=hypernet_path(), limit=3, device="cpu", workers=1, threads=1)
    rows, _ = aggregate(run_quality(job), job.methods)
    return {row.method: row for row in rows}


def test_every_row_scores_every_identity(table):
    assert all(row.identities == 3 and row.cells[IDENTITY].n == 3 for row in table.values())


def identity(table, method: str) -> float:
    return table[method].cells[IDENTITY].mean


def style(table, method: str) -> float:
    return table[method].cells["tinyfaces-style"].mean


def test_identity_fidelity_keeps_the_full_runs_order(table):
    # Full run (docs/results.md): Ours, personalize's default with the looks in words, 0.51 > only-hyper
    # 0.14 > base -0.02 (these 3: 0.380, 0.069, -0.093), and the finetune from zero (no-hyper 0.42, without
    # words) is above base too. Ours and No Hyper are level without words (+0.02 +- 0.03), so their order
    # on 3 identities is not checked; what the prediction adds is checked below.
    assert identity(table, "ours-described") > identity(table, "only-hyper") > identity(table, "base")
    assert identity(table, "no-hyper") > identity(table, "base") + 0.25
    assert identity(table, "ours-described") > identity(table, "base") + 0.25


def test_the_prediction_alone_carries_identity(table):
    # The hypernetwork must predict the face, not a mean adapter: the one-pass prediction is clearly
    # above the base model (full run: +0.17 over the same 50 identities; these 3: +0.16), which a
    # network that ignores its input is not (the first run's: +0.05).
    assert identity(table, "only-hyper") > identity(table, "base") + 0.1


def test_the_prediction_follows_the_prompt(table):
    # Full run: base 1.00, only-hyper 0.89, ours (words) 0.48, no-hyper 0.49. On the shipped model (retrained
    # with captions that name the looks, rung 14) the one-pass prediction keeps most prompted styles;
    # the earlier model's network kept half (0.52), so a regression to it fails here.
    assert style(table, "base") == 1.0
    assert style(table, "only-hyper") >= 0.75
    assert style(table, "base") > style(table, "ours-described") >= 0.4


def test_the_unet_part_of_the_prediction_keeps_every_style(table):
    # Full run (rung 14c): the UNet part alone takes every style the base model takes, and still carries
    # some identity; the text encoder's part is what costs style (rung 11).
    assert style(table, "only-hyper-unet") == style(table, "base")
    assert style(table, "only-hyper-unet") >= style(table, "only-hyper")
    assert identity(table, "only-hyper-unet") > identity(table, "base") + 0.05


def test_the_adapter_file_is_small(table):
    assert 0 < table["only-hyper"].bytes < 64_000


def test_drawing_ours_with_its_parts_apart_keeps_the_styles_and_the_face(table):
    # Full run (session 22): with the looks in words, the text encoder's part at 0 and the UNet part from 30%
    # took the file from 0.48 to 0.94 style accuracy and kept 0.38 identity (base -0.02); on these 3, 0.667 ->
    # 0.861 style at 0.321 identity (base -0.093). A change that breaks the parts' scales (both on: the whole
    # file's styles; the UNet part off too: the base model's identity) fails here.
    assert style(table, APART) >= style(table, "ours-described") + 0.1
    assert identity(table, APART) > identity(table, "base") + 0.2


def test_ending_the_adapters_unet_part_early_keeps_more_of_the_styles(table):
    # Full run (session 23): the same file with the base UNet finishing the last 20% of the steps took 0.987
    # style at 0.333 identity, against 0.943 / 0.377 without the end; on these 3, 0.917 against 0.861, at
    # 0.268 identity (base -0.093). An --adapter-end that does nothing fails here, and one that turns off the
    # whole adapter, text encoder's part and all, fails the identity check.
    assert style(table, WINDOW) > style(table, APART)
    assert identity(table, WINDOW) > identity(table, "base") + 0.15


def test_the_unet_parts_cross_attention_at_a_quarter_keeps_the_last_styles(table):
    # Full run (session 24): the keep-styles files from 20% to 80% with their cross-attention at 0.25 took 0.997
    # style (the base model told the same words: 0.997) at 0.303 identity, against 0.982 / 0.356 at full scale;
    # on these 3 the plain file from 30% to 80% goes from 0.917 to 1.000 style at 0.241 identity (base -0.093).
    # A --cross-attention-scale that does nothing keeps the window's styles and fails here.
    assert style(table, CROSS) > style(table, WINDOW)
    assert identity(table, CROSS) > identity(table, "base") + 0.25
