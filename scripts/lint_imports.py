"""Check Vigil's import contracts (``[tool.importlinter]`` in pyproject.toml) with import-linter.

The source folders ``stream/``, ``models/`` and ``alerts/`` are installed as ``vigil.stream``,
``vigil.models`` and ``vigil.alerts`` (see pyproject's ``package-dir``), which import-linter's
graph builder cannot follow: it walks the folder of the root package only. So the package is
assembled as it is installed, in a temporary folder, and checked there.

    .venv/bin/python scripts/lint_imports.py            # the working tree
    .venv/bin/python scripts/lint_imports.py --src DIR  # another checkout (tests use this)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MAPPED = {"vigil": "vigil", "vigil/stream": "stream", "vigil/models": "models",
          "vigil/alerts": "alerts"}


def assemble(src: Path, dest: Path) -> None:
    for target, folder in MAPPED.items():
        shutil.copytree(src / folder, dest / target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "artifacts", "data",
                                                      "static", "*.pyc"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1])
    args = ap.parse_args()
    src = args.src.resolve()
    with tempfile.TemporaryDirectory(prefix="vigil-layers-") as tmp:
        assemble(src, Path(tmp))
        env = dict(os.environ, PYTHONPATH=tmp)
        lint = Path(sys.executable).with_name("lint-imports")
        return subprocess.call([str(lint), str(src / "pyproject.toml"),
                                "--no-cache"], cwd=tmp, env=env)


if __name__ == "__main__":
    sys.exit(main())
