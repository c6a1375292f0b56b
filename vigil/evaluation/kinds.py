"""``vigil evaluate`` over the kinds registry: each kind says where it is judged.

A kind's :class:`~vigil.kinds.Evaluation` names its data set and its runner; this module
finds which data sets a folder or archive holds and runs the kinds that fit, so the CLI
names no kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from vigil.kinds import AlertKind, registered
from vigil.settings import VigilSettings
from vigil.stream.replay.sources import list_files

__all__ = ["DATASETS", "datasets_in", "evaluate_kinds"]

#: what a data set's records look like among the file names of a folder or archive
DATASETS: dict[str, Callable[[str], bool]] = {
    "physionet2019": lambda n: n.endswith(".psv"),
    "physionet2012": lambda n: n.endswith(".txt") and "utcomes" not in n,
}

SUMMARY_KEYS = ("deployed", "label", "patients", "scorers", "seconds")


def datasets_in(data: Path) -> set[str]:
    names = list_files(data)
    return {ds for ds, matches in DATASETS.items() if any(matches(n) for n in names)}


def _runner(kind: AlertKind) -> Callable[..., dict]:
    assert kind.evaluation is not None
    module, _, function = kind.evaluation.runner.partition(":")
    return getattr(importlib.import_module(module), function)


def _target(model: Path) -> str:
    """The alert kind an artifact directory was trained for."""
    import json

    return str(json.loads((Path(model) / "artifact.json").read_text())["target"])


def evaluate_kinds(data: Path, out: Path, settings: VigilSettings, *,
                   model: Path | None = None, limit: int | None = None,
                   exclude_training: bool = False) -> dict[str, dict]:
    """Every registered kind whose data set is in ``data``; one folder each when several."""
    found = datasets_in(data)
    kinds = [k for k in registered(settings) if k.evaluation and k.evaluation.dataset in found]
    if not kinds:
        raise ValueError(f"no records of {', '.join(sorted(DATASETS))} in {data}")
    target = _target(model) if model is not None else None
    summary: dict[str, dict] = {}
    for kind in kinds:
        mine = model if target == kind.name else None  # an artifact judges its own kind
        report = _runner(kind)(data, out / kind.name if len(kinds) > 1 else out, settings,
                               model_dir=mine, limit=limit, exclude_training=exclude_training)
        summary[kind.name] = {k: report[k] for k in SUMMARY_KEYS if k in report}
    return summary
