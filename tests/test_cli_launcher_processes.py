"""Under a launcher (torchrun, accelerate launch) every process runs the same command: the main process says a
stop's line once, and another process's error line says which process it comes from, as precompute's lines do."""

from __future__ import annotations

import pytest

from lowdim.errors import LowdimError
from lowdim_cli.main import app, main
from lowdim_sd.runs import Interrupted


def _add(command):
    app.command(name="raise-it")(command)


def _as_process(monkeypatch, rank: int, world: int) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))


def _raise_mistake():
    raise LowdimError("h4 holds checkpoints of an earlier run")


def _raise_stop():
    raise Interrupted("interrupted at step 20; checkpoint saved to h3/checkpoints/step-000020")


@pytest.mark.usefixtures("app_as_it_was")
@pytest.mark.parametrize(("rank", "prefix"), [(0, ""), (1, "process 2 of 2: ")])
def test_an_error_line_names_a_process_other_than_the_main_one(monkeypatch, capsys, rank, prefix):
    _add(_raise_mistake)
    _as_process(monkeypatch, rank, 2)
    assert main(["raise-it"]) == 1
    said = capsys.readouterr().err.strip().splitlines()
    assert said == [f"Error: {prefix}h4 holds checkpoints of an earlier run"]


@pytest.mark.usefixtures("app_as_it_was")
def test_a_stop_line_is_the_commands_own_in_every_process(monkeypatch, capsys):
    _add(_raise_stop)
    _as_process(monkeypatch, 1, 2)  # precompute's processes each say what their part keeps
    assert main(["raise-it"]) == 130
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("Interrupted at step 20; checkpoint saved")


@pytest.mark.usefixtures("app_as_it_was")
def test_one_process_says_errors_as_it_did(monkeypatch, capsys):
    _add(_raise_mistake)
    _as_process(monkeypatch, 3, 1)  # a stale RANK without a world of several processes means nothing
    assert main(["raise-it"]) == 1
    assert capsys.readouterr().err.strip() == "Error: h4 holds checkpoints of an earlier run"


def test_train_hypernet_stopped_in_another_process_claims_no_checkpoint(tmp_path):
    from types import SimpleNamespace

    from lowdim_sd.hypertrain import _Loop

    loop = SimpleNamespace(main=False, step=20, updating=False, job=SimpleNamespace(out=tmp_path),
                           accelerator=SimpleNamespace(process_index=1, num_processes=2))
    with pytest.raises(Interrupted) as stopped:
        _Loop.stopped(loop, KeyboardInterrupt())
    assert str(stopped.value) == ("interrupted in process 2 of 2 at step 20; the main process's line says what "
                                  "was kept")
    assert not any(tmp_path.iterdir())
