"""Versioned model artifacts: everything a worker needs to score exactly as in training.

A directory with ``artifact.json`` (what the model is, the feature schema it was trained
on, the window definition, calibration, alert levels, training metrics, the patients it
was trained on, and the data citation) and ``params.npz`` (network parameters and the
normaliser's statistics). Loading refuses an artifact whose feature schema or windows
differ from the running configuration: scoring shifted columns would be silent nonsense.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vigil.models.hybrid import HybridSpec
from vigil.models.preprocess import Normaliser

__all__ = ["ModelArtifact", "ArtifactMismatch", "FORMAT"]

FORMAT = "vigil-model/1"


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip time stamps: the same arrays, the same bytes
    (numpy stamps each member with the current time)."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


class ArtifactMismatch(ValueError):
    """The artifact was trained for other features or windows than this worker computes."""


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, v in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return tree


@dataclass
class ModelArtifact:
    name: str
    target: str  # "sepsis" | "deterioration"
    feature_names: tuple[str, ...]
    window_lengths_s: tuple[int, ...]
    allowed_lateness_s: int
    spec: HybridSpec
    params: dict
    normaliser: Normaliser
    calibration: tuple[float, float]  # Platt (a, b) on the logit
    levels: tuple[tuple[float, str], ...]
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    training_patients: list[str] = field(default_factory=list)
    #: when it was trained; "" for artifacts written by `vigil train`, which record no
    #: wall-clock time so that the same data and seed give the same bytes (the training
    #: report holds the date and timings)
    created: str = ""
    version: str = ""

    def params_digest(self) -> str:
        h = hashlib.sha256()
        for k, v in sorted(_flatten(self.params).items()):
            h.update(k.encode())
            h.update(np.ascontiguousarray(v, np.float32).tobytes())
        return h.hexdigest()[:12]

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.version = self.version or (f"{self.created[:10]}-{self.params_digest()}"
                                        if self.created else self.params_digest())
        arrays = {f"params/{k}": v for k, v in _flatten(self.params).items()}
        arrays.update(self.normaliser.to_arrays("normaliser/"))
        save_npz(directory / "params.npz", arrays)
        meta = {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            **({"created": self.created} if self.created else {}),
            "target": self.target,
            "feature_names": list(self.feature_names),
            "windows": {"lengths_s": list(self.window_lengths_s),
                        "allowed_lateness_s": self.allowed_lateness_s},
            "spec": asdict(self.spec),
            "calibration": {"a": self.calibration[0], "b": self.calibration[1]},
            "levels": [list(lv) for lv in self.levels],
            "normaliser_clip": self.normaliser.clip,
            "metrics": self.metrics,
            "training": self.training,
            "training_patients": self.training_patients,
        }
        (directory / "artifact.json").write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: Path) -> ModelArtifact:
        directory = Path(directory)
        meta = json.loads((directory / "artifact.json").read_text())
        if meta.get("format") != FORMAT:
            raise ArtifactMismatch(f"{directory}: format {meta.get('format')!r}, expected {FORMAT}")
        with np.load(directory / "params.npz") as z:
            arrays = {k: z[k] for k in z.files}
        names = tuple(meta["feature_names"])
        params = _unflatten({k.removeprefix("params/"): v for k, v in arrays.items()
                             if k.startswith("params/")})
        return cls(
            name=meta["name"],
            target=meta["target"],
            feature_names=names,
            window_lengths_s=tuple(meta["windows"]["lengths_s"]),
            allowed_lateness_s=meta["windows"]["allowed_lateness_s"],
            spec=HybridSpec(**meta["spec"]),
            params=params,
            normaliser=Normaliser.from_arrays(names, arrays, "normaliser/",
                                              meta.get("normaliser_clip", 5.0)),
            calibration=(meta["calibration"]["a"], meta["calibration"]["b"]),
            levels=tuple((float(t), str(s)) for t, s in meta["levels"]),
            metrics=meta.get("metrics", {}),
            training=meta.get("training", {}),
            training_patients=meta.get("training_patients", []),
            created=meta.get("created", ""),
            version=meta["version"],
        )

    def check_compatible(self, feature_names: tuple[str, ...], window_lengths_s: tuple[int, ...],
                         allowed_lateness_s: int) -> None:
        if tuple(feature_names) != self.feature_names:
            missing = set(self.feature_names) ^ set(feature_names)
            raise ArtifactMismatch(
                f"model {self.name} {self.version} was trained on another feature schema "
                f"({len(self.feature_names)} vs {len(feature_names)} features; differing: "
                f"{sorted(missing)[:5]}…). Retrain with `vigil train` or use the matching "
                "VIGIL_WINDOW_LENGTHS_S.")
        if tuple(window_lengths_s) != self.window_lengths_s:
            raise ArtifactMismatch(f"model {self.name} was trained with windows "
                                   f"{self.window_lengths_s} s, this worker uses {window_lengths_s} s")
        del allowed_lateness_s  # lateness changes what is refused, not what features mean
