"""What `pip install .` and an sdist carry: the wheel holds every file of the package (so nothing
the code reads at run time is left in the source tree), the console script and the extras; the
sdist holds what the test suite reads. Built by setuptools' backend in this process's
environment, from a copy of the tree (no network, nothing written into the checkout)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import resnet3d

ROOT = Path(__file__).resolve().parents[1]
NAME = f"resnet3d-{resnet3d.__version__}"
TOP_FILES = ("pyproject.toml", "README.md", "MANIFEST.in", "CONTRIBUTING.md")
FOLDERS = ("src", "tests", "docs", "scripts")
JUNK = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.egg-info", ".pytest_cache", ".hypothesis")


def _files(folder: Path) -> set:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    for name in TOP_FILES:
        shutil.copy2(ROOT / name, tree / name)
    for name in FOLDERS:
        shutil.copytree(ROOT / name, tree / name, ignore=JUNK)
    out = tree / "dist"
    out.mkdir()
    built_names = []
    for hook in ("build_wheel", "build_sdist"):  # one process each: setuptools keeps state between hooks
        call = f"import sys\nfrom setuptools import build_meta\nprint(build_meta.{hook}(sys.argv[1]))\n"
        done = subprocess.run([sys.executable, "-c", call, str(out)], cwd=tree, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        built_names.append(done.stdout.strip().splitlines()[-1])
    assert built_names == [f"{NAME}-py3-none-any.whl", f"{NAME}.tar.gz"]
    assert sorted(path.name for path in out.iterdir()) == sorted(built_names)
    return tree


def test_the_wheel_holds_every_file_of_the_package_and_the_console_script(built):
    with zipfile.ZipFile(built / "dist" / f"{NAME}-py3-none-any.whl") as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(f"{NAME}.dist-info/entry_points.txt").decode()
        metadata = wheel.read(f"{NAME}.dist-info/METADATA").decode()
    package = {name for name in names if not name.startswith(f"{NAME}.dist-info/")}
    assert package == {f"resnet3d/{name}" for name in _files(built / "src" / "resnet3d")}
    assert "resnet3d/py.typed" in package
    assert "[console_scripts]\nresnet3d = resnet3d.cli:main" in entry_points
    assert f"Version: {resnet3d.__version__}\n" in metadata  # pyproject reads it from the package
    for extra in ("hdf5", "tensorboard", "test"):
        assert f"Provides-Extra: {extra}\n" in metadata
    assert 'Requires-Dist: h5py>=3.8; extra == "hdf5"' in metadata


def test_the_sdist_holds_what_the_test_suite_reads(built):
    with tarfile.open(built / "dist" / f"{NAME}.tar.gz") as sdist:
        names = {member.name.split("/", 1)[1] for member in sdist.getmembers() if member.isfile()}
    for folder in FOLDERS:
        expected = {f"{folder}/{name}" for name in _files(built / folder)}
        assert expected <= names, sorted(expected - names)[:10]
    assert set(TOP_FILES) <= names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_test_modules_have_basenames_of_their_own():
    """The tests are no packages: pytest imports each module by its basename, and a second module
    of the same name (tests/engine/x.py and tests/gpu/x.py) is refused as an "import file mismatch"
    error, which a fresh clone's CI run met. conftest.py files are pytest's own, one per folder."""
    from collections import Counter

    names = Counter(path.name for path in Path(__file__).parent.rglob("*.py") if path.name != "conftest.py")
    assert [name for name, count in names.items() if count > 1] == []
