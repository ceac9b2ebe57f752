"""The one line a refused ``lowdim train --resume`` prints, shared by the resume-wording tests."""

from __future__ import annotations

from lowdim_cli.main import main


def refusal(capsys, args: list[str]) -> str:
    """The one line a refused resume prints, its wrapping undone."""
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("Error:") == 1, err
    return " ".join(err.split())
