"""Shared pieces of the operations tests: repository paths and the deploy/ tools."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.rules.yml"))


def load_tool(relative: str) -> ModuleType:
    """Import a script of deploy/ (not part of the installed package) by its path."""
    path = DEPLOY / relative
    name = f"vigil_deploy_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def require(binary: str) -> str:
    """The path of a Debian-packaged binary; a missing one fails (CI installs it)."""
    exe = shutil.which(binary)
    assert exe, f"{binary} is missing: scripts/install.sh installs it (scripts/debian-packages.txt)"
    return exe


@pytest.fixture(scope="session")
def dashboard_tool() -> ModuleType:
    return load_tool("grafana/vigil_dashboard.py")
