"""`vigil evaluate` on any PhysioNet 2019 folder: every scorer, the report, the plots."""

from __future__ import annotations

import json
import warnings

from vigil.evaluation.run import evaluate_sepsis
from vigil.models.artifact import ModelArtifact
from vigil.settings import VigilSettings
from vigil.stream.app import shipped_model

KEYS = {"auroc", "auprc", "utility", "sensitivity", "median_lead_hours",
        "alerts_per_patient_day", "threshold"}


def test_evaluate_reports_every_scorer_and_warns_about_training_patients(sample_2019, tmp_path):
    trained = set(ModelArtifact.load(shipped_model()).training_patients)
    overlap = {p.stem for p in sample_2019.glob("*.psv")} & trained
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate_sepsis(sample_2019, tmp_path, VigilSettings(), shipped_model(),
                                 progress=False, cache_dir=None)
    said = [str(w.message) for w in caught if "used to train" in str(w.message)]
    assert bool(said) == bool(overlap)
    if overlap:
        assert f"{len(overlap)} of 33 patients" in said[0]

    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["deployed"] == "deployed (hybrid + online)" and saved["patients"] == 33
    assert {"NEWS2>=5", "qSOFA>=2", "SIRS>=2", "hybrid-quantum", "hybrid-classical", "gbm",
            "deployed (hybrid + online)", "deployed, no online learning"} <= set(saved["scorers"])
    for name, m in saved["scorers"].items():
        assert KEYS <= set(m), name
        assert m["auroc"] is None or 0 <= m["auroc"] <= 1
    assert "sex" in saved["subgroups"] and "unit" in saved["subgroups"]
    for png in report["plots"]:
        assert (tmp_path / png).stat().st_size > 5_000
    # the sample's septic patients are found by the deployed model
    assert saved["scorers"]["deployed (hybrid + online)"]["sensitivity"] > 0.5

    again = evaluate_sepsis(sample_2019, tmp_path / "x", VigilSettings(), shipped_model(),
                            progress=False, cache_dir=None, exclude_training=True, plots=False)
    assert again["patients"] == 33 - len(overlap)
