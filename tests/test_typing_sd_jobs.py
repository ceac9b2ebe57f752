"""What a user's type checker makes of the SD jobs (tests/typing/user_sd_jobs.py): a job's path field takes a str
and reads back as a Path, docs/sd.md's and docs/eval.md's calls pass, and a required field left out is an error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from strict_checker import check  # tests/, on the path as pytest puts it

pytestmark = pytest.mark.strict_checker  # conftest.py orders the suite by it

SCRIPT = Path(__file__).resolve().parent / "typing" / "user_sd_jobs.py"


def expected_errors(script: Path) -> set[tuple[int, str]]:
    """(line, code) of each line ending ``# expect: CODE``."""
    lines = script.read_text().splitlines()
    return {(number, found.group(1)) for number, line in enumerate(lines, 1)
            if (found := re.search(r"# expect: ([\w-]+)$", line))}


def test_a_users_checker_reads_the_jobs_paths_as_paths_and_their_required_fields_as_required():
    out, err, status = check(SCRIPT)
    errors = {(int(line), code) for line, code in re.findall(r"user_sd_jobs\.py:(\d+): error: .*\[([\w-]+)\]$",
                                                             out, re.MULTILINE)}
    unexplained = [line for line in out.splitlines() if ": error:" in line and "user_sd_jobs.py" not in line]
    assert not unexplained and not err, out + err
    assert errors == expected_errors(SCRIPT), out
