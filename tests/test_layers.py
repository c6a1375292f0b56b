"""The layer contracts hold, and an upward import breaks them (so the check can fail).

``scripts/lint_imports.py`` runs import-linter on the package as installed; .ci/run runs it
too. Here it also runs on a copy of the tree with one deliberate upward import added: a
model importing the worker's metrics, which the layers forbid.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "lint_imports.py"


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--src", str(src)], capture_output=True,
                          text=True, timeout=300)


def test_the_layers_hold_and_there_are_no_cycles() -> None:
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 kept, 0 broken" in out.stdout


def test_an_upward_import_breaks_the_contract(tmp_path) -> None:
    for name in ("vigil", "stream", "models", "alerts"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "artifacts", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    base = tmp_path / "models" / "base.py"
    base.write_text(base.read_text() + "\nfrom vigil import metrics  # noqa: E402, F401\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert "vigil.models.base -> vigil.metrics" in out.stdout, out.stdout[-3000:]
