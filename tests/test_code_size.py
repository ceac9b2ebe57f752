"""The size rule the README states under the test command, as a test: a Python file of the project stays at or under
``MAX_LINES`` lines, so a module keeps one concern a reader can hold (a file over it gets split by what it owns,
as lowdim_sd/train.py into train.py and train_loss.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400
CHECKED = ("lowdim", "lowdim_sd", "cli", "plugins", "benchmarks", "tests")


def project_files() -> list[Path]:
    found = [path for top in CHECKED for path in sorted((ROOT / top).rglob("*.py"))]
    return [path for path in found if not any(part.startswith(".") or part == "build" for part in
                                                  path.relative_to(ROOT).parts)]


def test_every_python_file_stays_under_the_size_rule():
    files = project_files()
    assert len(files) > 300 and ROOT / "lowdim" / "files.py" in files  # the walk found the project
    too_long = {str(path.relative_to(ROOT)): lines for path in files
                if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not too_long, f"over {MAX_LINES} lines (split each by what it owns): {too_long}"
