"""The stop line of a precompute process other than the main one, as the ``lowdim`` command prints it under a
launcher: it starts ``process R of P:`` as docs/hypertrain.md says (and as that process's batch and error lines do),
and a stop that came with another process's failure names this process once. Played by one test process in the
environment torchrun gives each rank (RANK, WORLD_SIZE), beside a store of its own as the launcher's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from lowdim_cli.main import app, main
from lowdim_sd import process_failures, stopping
from lowdim_sd.precompute_batches import Kept
from lowdim_sd.precompute_resume import stop_note
from lowdim_sd.process_failures import LaunchedRun, failing_together
from lowdim_sd.runs import Interrupted

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hypertrain.md"
UNREADABLE = "faces/p1.png: not a picture"


@pytest.fixture
def second_of_two(monkeypatch):
    """This process as process 2 of a two-process launch, beside a fresh store of the launcher's."""
    store = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port),
                        "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RUN_ID": "fhr"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(process_failures, "WATCH_SECONDS", 0.05)
    yield
    process_failures.signals_stop_again()
    stopping.withdraw()


def _main_process_failed() -> None:
    """The main process posts its failure, as ``failing_together`` does in it."""
    this_one = LaunchedRun.connect()
    assert this_one is not None
    LaunchedRun(0, 2, this_one.store, this_one.prefix).post(UNREADABLE)


def _stopped_in_a_later_batch(tmp_path: Path) -> str:
    batch = Kept(tmp_path / ".batch-in-flight-p1", ["id-00005"], 25, 200)
    return stop_note(KeyboardInterrupt(), 2, 2, tmp_path / "index-p1.json", 1, 2, batch)


def _said(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main(argv)
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _documented_start() -> str:
    """How docs/hypertrain.md says a later stop line of a process other than the main one starts."""
    found = re.search(r"a later stop line from a\s+process other than the main one starts `([^`]*)`", DOCS.read_text())
    assert found is not None, "docs/hypertrain.md no longer says how such a line starts"
    return found[1].replace("R", "2").replace("P", "2")


@pytest.mark.usefixtures("app_as_it_was", "second_of_two")
def test_a_later_stop_line_of_process_2_starts_as_the_docs_say(tmp_path, capsys):
    def stopped():
        raise Interrupted(_stopped_in_a_later_batch(tmp_path))

    app.command(name="stop-it")(stopped)
    code, said = _said(["stop-it"], capsys)
    assert code == 130 and len(said) == 1
    assert said[0].startswith(_documented_start()) and _documented_start() == "process 2 of 2:"
    assert said[0].startswith("process 2 of 2: interrupted with 2 identities trained in this run; 2 are kept in ")


@pytest.mark.usefixtures("app_as_it_was", "second_of_two")
@pytest.mark.parametrize("trained", [2, 0])
def test_a_stop_that_came_with_the_main_process_failure_names_process_2_once(tmp_path, capsys, trained):
    def stopped_with_it():
        with failing_together():
            _main_process_failed()
            raise Interrupted(stop_note(KeyboardInterrupt(), trained, trained, tmp_path / "index-p1.json", 1, 2))

    app.command(name="stop-it")(stopped_with_it)
    code, said = _said(["stop-it"], capsys)
    assert code == 1 and len(said) == 1
    assert said[0].startswith(f"Error: process 2 of 2: process 1 of 2 failed: {UNREADABLE}; this process stopped "
                              f"with it: interrupted ")
    assert said[0].count("process 2 of 2") == 1, said[0]


@pytest.mark.usefixtures("second_of_two")
def test_an_out_of_memory_stop_keeps_its_process_name_whatever_another_process_did(tmp_path):
    _main_process_failed()  # an out-of-memory stop is this process's own error, warned with this line
    note = stop_note(torch.OutOfMemoryError(), 2, 2, tmp_path / "index-p1.json", 1, 2)
    assert note.startswith("process 2 of 2: out of memory with 2 identities trained in this run")
