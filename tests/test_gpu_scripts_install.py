"""The GPU scripts (benchmarks/*_gpu.sh) run blind in a short device session, on an image whose setuptools
nobody chose: a Python they cannot install lowdim into must stop them at once with one line saying what is
missing, not let them spend the session on tracebacks and exit 0.

The Python here is a fresh venv (its setuptools is ensurepip's, older than the 77 pyproject.toml needs) that
sees this interpreter's packages except lowdim and its plugins, as the GPU image has torch but no lowdim."""

from __future__ import annotations

import ensurepip
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = [("speed_gpu.sh", []), ("hyper_gpu.sh", ["run"]), ("base_gpu.sh", [])]
# Not shown to the venv: what it must install itself (lowdim, its plugins) and its own packaging tools.
HIDDEN = ("lowdim", "__editable__", "setuptools", "pkg_resources", "_distutils_hack", "pip", "distutils-precedence")
# The pip and setuptools wheels `venv` installs: ensurepip's own, as the venv module ships them.
BUNDLED = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("*.whl"))


def _venv(root: Path, with_packages: bool, with_pip: bool = True) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, capture_output=True)
    python = root / "bin" / "python"
    packages = Path(subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    if with_pip:
        _add_pip(python, packages)
    if with_packages:  # a folder of links to this interpreter's packages, searched after the venv's own
        shown = root / "shown"
        shown.mkdir()
        for folder in site.getsitepackages():
            for entry in Path(folder).iterdir():
                if not entry.name.startswith(HIDDEN) and not (shown / entry.name).exists():
                    (shown / entry.name).symlink_to(entry)
        (packages / "shown.pth").write_text(f"{shown}\n")
    return python


def _add_pip(python: Path, packages: Path) -> None:
    """The pip and setuptools that `venv` would install, unpacked from ensurepip's wheels: ensurepip's pip run
    to install the same files is most of a venv's making (seconds of CPU)."""
    if not BUNDLED:  # an interpreter whose ensurepip finds its wheels elsewhere: let it install them
        subprocess.run([str(python), "-m", "ensurepip"], check=True, capture_output=True)
    for wheel in BUNDLED:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(packages)


@pytest.fixture(scope="module")
def old_setuptools(tmp_path_factory) -> Path:
    """A Python with torch and diffusers, no lowdim, and a setuptools older than 77."""
    python = _venv(tmp_path_factory.mktemp("venv") / "v", with_packages=True)
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('setuptools'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    assert int(version.split(".")[0]) < 77
    return python


def _checkout(tmp_path: Path, wheels: bool) -> Path:
    """The scripts and pyproject.toml, as the device machine's copy of the working tree holds them."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "benchmarks", repo / "benchmarks", ignore=shutil.ignore_patterns("results", "*.py"))
    shutil.copy(REPO / "pyproject.toml", repo)
    if wheels:  # carried, but without the setuptools wheel the header says to download
        (repo / ".wheels").mkdir()
    return repo


def _run(repo: Path, python: Path, script: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": str(python), "OUT": str(repo / "out"), "WORK": str(repo / "work"),
           "DEVICE": "cpu", "ARGS": "--quick --device cpu", "OMP_NUM_THREADS": "1", "PIP_NO_INDEX": "1"}
    return subprocess.run(["bash", f"benchmarks/{script}", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)


def _stop_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert "total" not in done.stdout  # nothing after the install ran
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("script, args", SCRIPTS)
def test_an_old_setuptools_without_wheels_stops_the_script_with_one_line(tmp_path, old_setuptools, script, args):
    line = _stop_line(_run(_checkout(tmp_path, wheels=False), old_setuptools, script, args))
    assert "stopped: .wheels was not carried, and this machine lacks setuptools>=77 (it has 65." in line
    assert line in (tmp_path / "repo" / "out" / "log.txt").read_text()  # it comes back with the files too


@pytest.mark.slow
@pytest.mark.parametrize("script, args", SCRIPTS)
def test_wheels_without_setuptools_stop_the_script_with_one_line(tmp_path, old_setuptools, script, args):
    line = _stop_line(_run(_checkout(tmp_path, wheels=True), old_setuptools, script, args))
    assert "stopped: pip found no 'setuptools>=77' in .wheels" in line and "Prepare once" in line


@pytest.mark.slow
def test_a_machine_without_diffusers_or_wheels_is_told_which(tmp_path):
    # No pip either: the script must stop at its first check, before anything would run pip.
    bare = _venv(tmp_path / "bare", with_packages=False, with_pip=False)
    line = _stop_line(_run(_checkout(tmp_path, wheels=False), bare, "speed_gpu.sh", []))
    assert "stopped: .wheels was not carried, and this machine lacks diffusers" in line


@pytest.mark.parametrize("script", [name for name, _ in SCRIPTS])
def test_each_header_says_to_download_the_setuptools_wheel(script):
    header = (REPO / "benchmarks" / script).read_text()
    assert "pip download 'setuptools>=77' --no-deps -d .wheels" in header
    assert ". benchmarks/gpu_install.sh" in header or 'gpu_install.sh"' in header
