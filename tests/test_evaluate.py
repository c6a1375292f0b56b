"""`vigil evaluate` on any PhysioNet 2019 folder: every scorer, the report, the plots."""

from __future__ import annotations

import json
import warnings

from vigil.evaluation.run import evaluate_sepsis
from vigil.kinds.sepsis import shipped_model
from vigil.models.artifact import ModelArtifact
from vigil.settings import VigilSettings

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
    assert "online River" in saved["scorers"]

    # the lifecycle's effect: never more pages than raw crossings, far fewer than every hour
    for name in ("deployed (hybrid + online)", "NEWS2>=5"):
        b = saved["alert_burden"][name]
        raw, cross, full = (b[k] for k in ("every hour above threshold", "threshold crossings",
                                           "full policy"))
        assert full["alerts"] <= cross["alerts"] < raw["alerts"], name
        assert abs(full["alerts_per_bed_per_shift"] - full["alerts_per_patient_day"] / 2) < 1e-4
        assert 0 <= full["true_alert_share"] <= 1
        # hysteresis keeps alerts active across dips: never less warning than raw crossings
        assert full["sensitivity"] >= cross["sensitivity"], name

    again = evaluate_sepsis(sample_2019, tmp_path / "x", VigilSettings(), shipped_model(),
                            progress=False, cache_dir=None, exclude_training=True, plots=False)
    assert again["patients"] == 33 - len(overlap)


def test_deterioration_is_evaluated_on_2012_against_death_said_to_be_a_proxy(sample_2012,
                                                                             tmp_path):
    from vigil.evaluation.run import evaluate_deterioration

    report = evaluate_deterioration(sample_2012, tmp_path, VigilSettings(), progress=False,
                                    cache_dir=None)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["patients"] == 12 and saved["deaths"] == 6
    assert saved["label"] == "in-hospital death" and "proxy" in saved["notes"][0]
    deployed = saved["scorers"][saved["deployed"]]
    assert {"auroc", "auprc", "sensitivity", "flagged_survivors",
            "alerts_per_patient_day"} <= set(deployed)
    assert 0 <= deployed["sensitivity"] <= 1 and 0 <= deployed["flagged_survivors"] <= 1
    assert (tmp_path / report["plots"][0]).exists()


def test_evaluate_command_runs_each_data_set_it_finds(tmp_path):
    import subprocess
    import sys

    from vigil.sample import sample_path

    out = subprocess.run([sys.executable, "-m", "vigil", "evaluate", "--data", str(sample_path()),
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["sepsis"]["patients"] == 33 and summary["deterioration"]["patients"] == 12
    assert (tmp_path / "sepsis" / "metrics.json").exists()
    assert (tmp_path / "deterioration" / "metrics.json").exists()
