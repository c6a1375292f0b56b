"""Each module's public surface, its runnable examples, and the install layout."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys

import pytest

import vigil
import vigil.alerts
import vigil.models
import vigil.stream

# each folder is mapped separately under vigil. (see pyproject), so walk each of them
PACKAGES = (vigil, vigil.stream, vigil.models, vigil.alerts)
MODULES = sorted({p.__name__ for p in PACKAGES} | {
    m.name for p in PACKAGES for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")
    if not m.name.endswith("__main__")})


def test_folders_install_under_the_vigil_namespace_only(tmp_path) -> None:
    # in a fresh interpreter outside the source tree (pytest puts the repo on sys.path)
    code = ("import importlib.util as u, vigil.stream, vigil.models, vigil.alerts;"
            "print([n for n in ('stream', 'models', 'alerts') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", "generic top-level names leaked into site-packages"
    assert {"vigil.stream", "vigil.models", "vigil.alerts", "vigil.stream.replay"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    mod = importlib.import_module(name)
    for exported in getattr(mod, "__all__", []):
        assert hasattr(mod, exported), f"{name}.__all__ lists missing {exported}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


def test_the_wheel_ships_the_sample_data_and_every_model_file(tmp_path) -> None:
    """A non-editable install (the Docker image) must find what the editable one finds."""
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                          str(tmp_path), str(root)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("vigil-*.whl"))).namelist()
    art = root / "vigil" / "artifacts"
    for f in art.rglob("*"):
        if f.is_file():
            assert f"vigil/artifacts/{f.relative_to(art)}" in names, f
    assert sum(n.startswith("vigil/data/physionet2019/") for n in names) == 33
    assert any(n.startswith("vigil/stream/replay/") for n in names)
