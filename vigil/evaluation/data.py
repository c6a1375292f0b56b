"""Feature tables for training and evaluation, cached on disk by content.

Building the table for PhysioNet 2019 set A (790k rows) takes about a minute; training and
evaluation runs reuse it. The cache key covers the data file(s), the patient limit, the
settings that shape features, and the source of every module on the feature path, so a
change to validation, windows or features never reads a stale table.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import numpy as np

from vigil.settings import VigilSettings
from vigil.stream import features, offline, validation, windows
from vigil.stream.offline import FeatureTable, build_feature_table
from vigil.stream.replay import physionet2012, physionet2019
from vigil.stream.replay.sources import load_stays
from vigil.wire import codes

__all__ = ["feature_table", "cache_key"]

_FEATURE_PATH_MODULES = (codes, validation, windows, features, offline, physionet2019,
                         physionet2012)


def cache_key(path: Path, limit: int | None, settings: VigilSettings) -> str:
    h = hashlib.sha256()
    path = Path(path).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{int(st.st_mtime)}".encode())
    h.update(json.dumps([limit, settings.window_lengths_s, settings.allowed_lateness_s]).encode())
    for mod in _FEATURE_PATH_MODULES:
        h.update(inspect.getsource(mod).encode())
    return h.hexdigest()[:20]


def feature_table(path: Path, settings: VigilSettings, *, limit: int | None = None,
                  cache_dir: Path | None = Path(".vigil-cache"), progress: bool = True,
                  workers: int = 2) -> FeatureTable:
    """The feature table of the stays in ``path`` (folder or archive), built or from cache."""
    target = None
    if cache_dir is not None:
        target = Path(cache_dir) / f"features-{cache_key(path, limit, settings)}.npz"
        if target.exists():
            return _load(target)
    stays = load_stays(Path(path), limit)
    if not stays:
        raise SystemExit(f"no PhysioNet 2019 (.psv) or 2012 (.txt) records found in {path}")
    table = build_feature_table(stays, settings, workers=workers, progress=progress)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        _save(table, target)
    return table


def _save(t: FeatureTable, target: Path) -> None:
    tmp = target.with_suffix(".tmp.npz")
    np.savez(tmp, X=t.X, patient=t.patient, hours=t.hours, label=t.label,
             has_record=t.has_record, ages=t.ages,
             meta=np.array(json.dumps({"names": t.names, "source_ids": t.source_ids,
                                       "datasets": t.datasets, "units": t.units,
                                       "sexes": t.sexes, "refused": t.refused})))
    tmp.replace(target)


def _load(target: Path) -> FeatureTable:
    with np.load(target) as z:
        meta = json.loads(str(z["meta"]))
        return FeatureTable(X=z["X"], names=tuple(meta["names"]), patient=z["patient"],
                            hours=z["hours"], label=z["label"], has_record=z["has_record"],
                            source_ids=meta["source_ids"], datasets=meta["datasets"],
                            units=meta["units"], ages=z["ages"], sexes=meta["sexes"],
                            refused=meta["refused"])
