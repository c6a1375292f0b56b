"""Where the shipped sample of real ICU data lives (see ``vigil/data/README.md``)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["sample_path"]


def sample_path(dataset: str | None = None) -> Path:
    """The sample folder (both data sets), or one data set's folder."""
    base = Path(str(files("vigil") / "data"))
    return base / dataset if dataset else base
