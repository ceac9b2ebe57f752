"""A run decorated by ``runs.one_run_per_folder`` keeps its signature for a user's type checker: a wrong call is an
error and its result is typed, not Any (review AR2)."""

from __future__ import annotations

import re

import pytest
from strict_checker import check  # tests/, on the path as pytest puts it

pytestmark = pytest.mark.strict_checker  # conftest.py orders the suite by it

RUNS = {"lowdim_sd.workflows": "run_train", "lowdim_sd.precompute": "precompute",
        "lowdim_sd.hypertrain": "train_hypernet"}


def test_a_decorated_run_keeps_its_signature_for_type_checkers(tmp_path):
    script = tmp_path / "uses_runs.py"
    script.write_text("".join(f"from {module} import {name}\nreveal_type({name})\n" for module, name in RUNS.items())
                      + "run_train(1, 2, 3, 4, 5)\n")
    out, err, _ = check(script)
    revealed = re.findall(r'Revealed type is "(.*)"', out)
    assert len(revealed) == len(RUNS) and all(kind.startswith("def (job: ") for kind in revealed), out + err
    assert "Too many arguments" in out or 'incompatible type "int"; expected "TrainJob"' in out, out
