"""Test settings shared by the whole suite."""

import os

import pytest
from hypothesis import settings

# Two xdist workers each running torch's default of one thread a core oversubscribe a 2-core machine (OpenMP threads
# spin waiting for each other): each worker, and each command a test starts, gets its share of the cores unless the
# caller set its own. Read here, before any test module imports torch.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

# CI explores the same examples on every run, so a red build is reproducible; locally, examples vary.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def app_as_it_was():
    """The app's commands put back after the test: plugin commands are added to the one module-level app (and
    the registries they were added for remembered), so a test that adds some must leave none for the next."""
    from lowdim_cli import main as cli_main
    from lowdim_cli.main import app

    commands, groups = list(app.registered_commands), list(app.registered_groups)
    callback, added_for = app.registered_callback, set(cli_main._commands_added_for)
    yield
    app.registered_commands[:], app.registered_groups[:] = commands, groups
    app.registered_callback = callback
    cli_main._commands_added_for.clear()
    cli_main._commands_added_for.update(added_for)


@pytest.fixture
def one_thread():
    """One torch thread during the test, whatever the code under test (accelerate, the CLI) sets."""
    import torch  # here, not above: the thread count must be set before torch is first imported

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_process_group(tmp_path):
    """torch.distributed set up as a single process (gloo), as DistributedDataParallel needs, and torn down."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.fixture
def detector_runs(monkeypatch):
    """The shapes of the pictures dlib's face detector is run on, in order (the real detector still answers), with
    no detection kept from other tests: how many times a run looked for faces, and at what size."""
    from collections import OrderedDict

    faces = pytest.importorskip("lowdim_sd.faces")
    real, runs = faces._detector(), []

    class Counting:
        def run(self, array, *args):
            runs.append(array.shape)
            return real.run(array, *args)

    monkeypatch.setattr(faces, "_detector", Counting)
    monkeypatch.setattr(faces, "_detections", OrderedDict())
    return runs
