"""A lock (or reader mark) whose record names no process that can be asked: a hand-edited or foreign file must
not hold a folder forever. Such a record is read as a torn one: a run only within the grace period."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

import lowdim
from lowdim_sd import run_lock, runs

HERE = socket.gethostname()
NO_USABLE_PID = [{"host": HERE, "command": "edited by hand"}, {"host": HERE, "pid": None},
                 {"host": HERE, "pid": "abc"}, {"host": HERE, "pid": "123"}, {"host": HERE, "pid": 1.5},
                 {"host": HERE, "pid": True}, {"host": HERE, "pid": 0}, {"host": HERE, "pid": -1},
                 {"host": HERE, "pid": 2**70}, {}, {"pid": None}, {"host": None, "pid": None}]


def lock_with(folder, record: dict, age: float = 0.0):
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / runs.LOCK
    lock.write_text(json.dumps(record))
    if age:
        os.utime(lock, (time.time() - age,) * 2)
    return lock


@pytest.mark.parametrize("record", NO_USABLE_PID, ids=json.dumps)
def test_a_record_with_no_usable_pid_is_a_run_only_within_the_grace(tmp_path, record):
    fresh = lock_with(tmp_path / "fresh", record)
    old = lock_with(tmp_path / "old", record, age=run_lock.LOCK_GRACE_SECONDS + 60)
    assert run_lock.holder_alive(run_lock.read_record(fresh), fresh)
    assert not run_lock.holder_alive(run_lock.read_record(old), old)
    assert not runs.folder_in_use(tmp_path / "old")


@pytest.mark.parametrize("record", NO_USABLE_PID[:3], ids=json.dumps)
def test_a_lock_with_no_usable_pid_is_taken_over_past_the_grace(tmp_path, record):
    lock = lock_with(tmp_path / "o", record, age=run_lock.LOCK_GRACE_SECONDS + 60)
    with pytest.warns(UserWarning, match="taking over the lock of a run that ended without releasing it"), \
            runs.output_folder(tmp_path / "o"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_a_fresh_lock_with_no_usable_pid_is_refused_naming_the_lock_file(tmp_path):
    lock = lock_with(tmp_path / "o", {"host": HERE, "command": "edited by hand"})
    with pytest.raises(lowdim.LowdimError) as caught, runs.output_folder(tmp_path / "o"):
        pass
    said = str(caught.value)
    assert str(lock) in said and "no usable pid" in said and "None" not in said, said


def test_another_machines_lock_without_a_pid_is_still_respected(tmp_path):
    """Its process cannot be asked from here, pid or no pid: as before, the refusal says which file to delete."""
    lock = lock_with(tmp_path / "o", {"host": "another-machine", "command": "lowdim train"},
                     age=run_lock.LOCK_GRACE_SECONDS + 60)
    with pytest.raises(lowdim.LowdimError, match=f"another-machine.*delete {lock}"), runs.output_folder(tmp_path / "o"):
        pass


def test_a_live_pid_here_still_holds_past_the_grace(tmp_path):
    lock = lock_with(tmp_path / "o", {"host": HERE, "pid": os.getppid(), "command": "lowdim train"},
                     age=run_lock.LOCK_GRACE_SECONDS + 60)
    assert run_lock.holder_alive(run_lock.read_record(lock), lock)


def test_a_record_nested_past_what_json_reads_is_a_torn_one(tmp_path):
    lock = tmp_path / runs.LOCK
    lock.write_text("[" * 100_000)
    assert run_lock.read_record(lock) is None
