"""Model artifacts: round trip, refusal of a mismatched schema, and reproducible training."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from vigil.models.artifact import ArtifactMismatch, ModelArtifact
from vigil.models.hybrid import HybridSpec, init_params
from vigil.models.hybrid_scorer import HybridScorer
from vigil.models.preprocess import Normaliser


def small_artifact(names: tuple[str, ...]) -> ModelArtifact:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, len(names)))
    X[rng.random(X.shape) < 0.2] = np.nan
    norm = Normaliser.fit(X, names)
    spec = HybridSpec(n_inputs=norm.n_inputs, hidden=4, n_qubits=2, layers=1)
    params = jax.tree_util.tree_map(np.asarray, init_params(spec, jax.random.PRNGKey(0)))
    return ModelArtifact(name="t", target="sepsis", feature_names=names,
                         window_lengths_s=(3600,), allowed_lateness_s=0, spec=spec,
                         params=params, normaliser=norm, calibration=(1.0, -3.0),
                         levels=((0.05, "medium"), (0.2, "high")),
                         training_patients=["p1", "p2"])


def test_round_trip_keeps_every_number(tmp_path) -> None:
    names = ("HR_last", "RR_last", "Lactate_last")
    art = small_artifact(names)
    art.save(tmp_path / "a")
    back = ModelArtifact.load(tmp_path / "a")
    assert back.version == art.version and back.params_digest() == art.params_digest()
    assert back.levels == art.levels and back.training_patients == ["p1", "p2"]
    X = np.array([[80.0, np.nan, 4.0], [120.0, 30.0, np.nan]])
    a = HybridScorer(art, names).score_batch(X).risk
    b = HybridScorer(back, names).score_batch(X).risk
    np.testing.assert_array_equal(a, b)
    assert np.all((a > 0) & (a < 1))
    contrib = HybridScorer(back, names).attribute(X)
    assert contrib.shape == (2, 3) and np.isfinite(contrib).all()


def test_a_mismatched_feature_schema_is_refused(tmp_path) -> None:
    small_artifact(("HR_last", "RR_last")).save(tmp_path / "a")
    with pytest.raises(ArtifactMismatch, match="feature schema"):
        HybridScorer.load(tmp_path / "a", ("RR_last", "HR_last"), (3600,), 0)
    with pytest.raises(ArtifactMismatch, match="windows"):
        HybridScorer.load(tmp_path / "a", ("HR_last", "RR_last"), (1800,), 0)
    meta = json.loads((tmp_path / "a" / "artifact.json").read_text())
    meta["format"] = "something-else/9"
    (tmp_path / "a" / "artifact.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactMismatch, match="format"):
        ModelArtifact.load(tmp_path / "a")


def test_training_is_reproducible_and_writes_a_loadable_artifact(sample_2019, tmp_path) -> None:
    from vigil.evaluation.training import run_training
    from vigil.models.train import TrainConfig
    from vigil.settings import VigilSettings

    s = VigilSettings()
    cfg = TrainConfig(epochs=1, batch_size=256)
    small = {"hidden": 8, "n_qubits": 2, "layers": 1}  # a quick circuit; same code path
    r1 = run_training(sample_2019, tmp_path / "a", s, config=cfg, spec_overrides=small,
                      progress=False, cache_dir=None)
    r2 = run_training(sample_2019, tmp_path / "b", s, config=cfg, spec_overrides=small,
                      progress=False, cache_dir=None)
    with pytest.raises(ValueError, match="LightGBM"):  # the stack needs its comparator
        run_training(sample_2019, tmp_path / "c", s, config=cfg, spec_overrides=small,
                     progress=False, cache_dir=None, with_comparators=False)
    a, b = ModelArtifact.load(tmp_path / "a"), ModelArtifact.load(tmp_path / "b")
    assert a.params_digest() == b.params_digest()  # seeded: same data, same parameters
    assert r1["split"] == r2["split"] and sum(r1["split"].values()) == 33
    assert len(a.training_patients) == r1["split"]["fit"] + r1["split"]["validation"]
    assert (tmp_path / "a" / "training-report.json").exists()


def test_deterioration_training_is_bit_reproducible_and_stacks_lightgbm(sample_2012,
                                                                        tmp_path) -> None:
    """`vigil train --kind deterioration`: the same data and seed write the same files,
    and the deployed stack holds the hybrid, LightGBM and the online model."""
    import hashlib

    from vigil.evaluation.training import run_training
    from vigil.models.deployed import StackedScorer
    from vigil.models.train import TrainConfig
    from vigil.settings import VigilSettings

    s = VigilSettings()
    cfg = TrainConfig(epochs=1, batch_size=256)
    small = {"hidden": 8, "n_qubits": 2, "layers": 1}  # the ablation needs 3 * layers = n + 1
    for d in ("a", "b"):
        r = run_training(sample_2012, tmp_path / d, s, kind="deterioration", config=cfg,
                         spec_overrides=small, progress=False, cache_dir=None)
    assert r["kind"] == "deterioration" and "proxy" in r["label"]

    def digests(root):  # type: ignore[no-untyped-def]
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()
                and p.name != "training-report.json"}  # it records the seconds taken

    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert a == b and {"artifact.json", "params.npz", "deployed.json", "online.pkl",
                       "comparators/gbm.txt"} <= set(a)
    art = ModelArtifact.load(tmp_path / "a")
    assert art.target == "deterioration" and art.name == "deterioration-hybrid-qnn"
    stacked = StackedScorer.load(tmp_path / "a", art.feature_names)
    assert set(stacked.members) == {"gbm"} and stacked.learns_from == "death"
