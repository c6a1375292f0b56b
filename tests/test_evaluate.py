"""`vigil evaluate` on any PhysioNet 2019 folder: every scorer, the report, the plots."""

from __future__ import annotations

import csv
import gzip
import json
import warnings
from typing import ClassVar

import numpy as np
import pytest

from vigil.evaluation import preonset
from vigil.evaluation.metrics import auprc, auroc
from vigil.evaluation.online_replay import (
    label_known_hours,
    replay_online,
    replay_online_event_time,
    replay_online_withheld,
)
from vigil.evaluation.preonset import (
    bootstrap_ranking,
    onset_hours,
    pre_onset_rows,
    rising_by_patient,
    warned_before_onset,
)
from vigil.evaluation.run import evaluate_sepsis
from vigil.kinds.sepsis import shipped_model
from vigil.models.artifact import ModelArtifact
from vigil.models.online import OnlineModel
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
    assert saved["deployed"] == "deployed (hybrid + gbm + online)" and saved["patients"] == 33
    assert {"NEWS2>=5", "qSOFA>=2", "SIRS>=2", "hybrid-quantum", "hybrid-classical", "gbm",
            "deployed (hybrid + gbm + online)", "deployed, no online learning"} <= set(saved["scorers"])
    for name, m in saved["scorers"].items():
        assert KEYS <= set(m), name
        assert m["auroc"] is None or 0 <= m["auroc"] <= 1
    assert "sex" in saved["subgroups"] and "unit" in saved["subgroups"]
    _check_pre_onset(saved)
    _check_scores_csv(tmp_path / "scores.csv.gz", saved, sample_2019)
    for png in report["plots"]:
        assert (tmp_path / png).stat().st_size > 5_000
    # the sample's septic patients are found by the deployed model
    assert saved["scorers"]["deployed (hybrid + gbm + online)"]["sensitivity"] > 0.5
    assert "online River" in saved["scorers"]

    # the lifecycle's effect: never more pages than raw crossings, far fewer than every hour
    for name in ("deployed (hybrid + gbm + online)", "NEWS2>=5"):
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


def _check_pre_onset(saved: dict) -> None:
    """The report judges each scorer before onset, with patient-level intervals."""
    pre = saved["pre_onset"]
    assert "no warning" in pre["definition"]["no_warning"]
    assert 0 < pre["rows"] < saved["rows"] and pre["septic_patients"] > 0
    for name in ("deployed (hybrid + gbm + online)", "hybrid-quantum", "hybrid-classical", "gbm",
                 "deployed, no online learning", "deployed, own labels withheld",
                 "deployed, event time", "online River, event time, own labels withheld"):
        m = pre["scorers"][name]
        lo, hi = m["auroc_ci95"]
        assert lo <= m["auroc"] <= hi, name
        assert 0 <= m["warned_share"] <= 1 and m["false_alerts_per_patient_day"] >= 0
    assert {"deployed (hybrid + gbm + online)", "NEWS2>=5"} <= set(pre["lifecycle"])
    assert sum(pre["lifecycle"]["deployed (hybrid + gbm + online)"]["lead_hours_counts"]) == round(
        pre["lifecycle"]["deployed (hybrid + gbm + online)"]["warned_share"] * pre["septic_patients"])
    split = pre["online_learning"]
    assert {"online learning from other patients (unit adaptation)",
            "online learning from the same patient"} <= set(split["pre_onset"])
    assert set(split["pre_onset"]) == set(split["all_hours"])
    assert "pre_onset.png" in saved["plots"]


def _check_scores_csv(path, saved: dict, sample) -> None:  # type: ignore[no-untyped-def]
    """scores.csv.gz: one row per scored hour, every scorer, and enough to recompute."""
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0])
    assert columns[:4] == ["dataset", "patient_id", "hour", "label"]
    assert columns[-1] == "deployed_alert" and set(saved["pre_onset"]["scorers"]) <= set(columns)
    assert len(rows) == saved["rows"]
    assert {r["patient_id"] for r in rows} == {p.stem for p in sample.glob("*.psv")}
    assert len({(r["patient_id"], r["hour"]) for r in rows}) == len(rows)  # one row an hour
    assert {r["dataset"] for r in rows} == {"physionet2019"}
    assert {r["deployed_alert"] for r in rows} <= {"", "medium", "high"}
    assert any(r["deployed_alert"] for r in rows)
    # a figure recomputed from the file alone, with its own reading of "before onset"
    onset: dict[str, float] = {}
    for r in rows:
        if r["label"] == "1":
            onset.setdefault(r["patient_id"], float(r["hour"]) + 6)
    pre = [r for r in rows if float(r["hour"]) < onset.get(r["patient_id"], np.inf)]
    y = np.array([int(r["label"]) for r in pre])
    for name in ("gbm", "deployed (hybrid + gbm + online)"):
        risk = np.array([float(r[name]) for r in pre])
        assert abs(auroc(y, risk) - saved["pre_onset"]["scorers"][name]["auroc"]) < 1e-4


def test_deterioration_is_evaluated_on_2012_against_death_said_to_be_a_proxy(sample_2012,
                                                                             tmp_path):
    from vigil.evaluation.deterioration import DEPLOYED, HORIZONS_H, evaluate_deterioration

    report = evaluate_deterioration(sample_2012, tmp_path, VigilSettings(), progress=False,
                                    cache_dir=None, bootstrap_resamples=20)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["patients"] == 12 and saved["deaths"] == 6
    assert saved["label"] == "in-hospital death" and "proxy" in saved["notes"][0]
    assert saved["deployed"] == DEPLOYED
    for name in (DEPLOYED, "gbm", "hybrid-quantum", "hybrid-classical", "online River",
                 "NEWS2>=7 or red (rule)", "NEWS2>=5"):
        m = saved["scorers"][name]
        assert {f"auroc_{h:g}h" for h in HORIZONS_H} | {"auroc", "auprc"} <= set(m), name
    for name in (DEPLOYED, "NEWS2>=5", "NEWS2>=7 or red (rule)"):
        m = saved["scorers"][name]
        assert 0 <= m["deaths_flagged"] <= 1 and 0 <= m["survivors_flagged"] <= 1
        assert m["alerts_per_patient_day"] >= 0
    # the deployed score's interval holds its own figure; the circuit's ablation is paired
    lo, hi = saved["bootstrap"]["auroc"][DEPLOYED]
    assert lo <= saved["scorers"][DEPLOYED]["auroc"] <= hi
    assert "hybrid-classical" in saved["bootstrap"]["auroc_minus_deployed"]
    for png in report["plots"]:
        assert (tmp_path / png).stat().st_size > 5_000
    # scores.csv.gz recomputes the stay AUROC of the highest deployed score
    with gzip.open(tmp_path / "scores.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f))
    top: dict[str, float] = {}
    died: dict[str, int] = {}
    for r in rows:
        top[r["patient_id"]] = max(top.get(r["patient_id"], 0.0), float(r[DEPLOYED]))
        died[r["patient_id"]] = int(r["label"])
    ids = sorted(top)
    assert abs(auroc(np.array([died[i] for i in ids]), np.array([top[i] for i in ids]))
               - saved["scorers"][DEPLOYED]["auroc"]) < 1e-4


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


# --------------------------------------------------------------------------------------------
# Sepsis judged before onset (issue 11): row selection, warnings, the online gain split.

def _two_patients() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patient 0: hours 1-14, first positive label at hour 5, so onset = 11 (labels lead
    clinical onset by 6 h). Patient 1: hours 1-6, never septic."""
    label = np.r_[np.zeros(4), np.ones(10), np.zeros(6)].astype(np.int8)
    hours = np.r_[np.arange(1.0, 15.0), np.arange(1.0, 7.0)]
    patient = np.r_[np.zeros(14), np.ones(6)].astype(np.int32)
    return label, hours, patient


def test_pre_onset_rows_drop_septic_hours_from_onset_and_keep_every_other_hour():
    label, hours, patient = _two_patients()
    onset = onset_hours(label, hours, patient)
    assert onset[0] == 11.0 and np.isnan(onset[-1])
    keep = pre_onset_rows(label, hours, patient)
    septic = patient == 0
    assert keep[septic].tolist() == (hours[septic] < 11).tolist()  # hours 11-14 dropped
    assert keep[~septic].all()  # the non-septic patient keeps every hour
    # the 6 labelled hours before onset stay in: they are the positives a warning must find
    assert label[keep].sum() == 6


def test_warned_in_window_counts_only_alerts_in_the_12_h_before_onset():
    # four septic patients, onset at hour 20 each (first label at 14), and one non-septic
    n = 30
    label = np.tile(np.r_[np.zeros(13), np.ones(n - 13)], 4)
    hours = np.tile(np.arange(1.0, n + 1), 4)
    patient = np.repeat(np.arange(4), n)
    active = np.zeros(4 * n, bool)
    active[0 * n + 16] = True  # hour 17: warned 3 h before onset
    active[1 * n + 19:1 * n + 25] = True  # hours 20-25: at and after onset only -> no warning
    active[2 * n + 2] = True  # hour 3: long before the window -> a false alert, not a warning
    active[3 * n + 4:3 * n + 10] = True  # hours 5-10: still on at hour 8 = onset - 12 -> warned
    healthy = np.zeros(24, bool)
    healthy[[3, 4, 10]] = True  # two episodes in a non-septic patient
    label = np.r_[label, np.zeros(24)].astype(np.int8)
    hours = np.r_[hours, np.arange(1.0, 25.0)]
    patient = np.r_[patient, np.full(24, 4)]
    active = np.r_[active, healthy]
    w = warned_before_onset(label, hours, patient, active, rising_by_patient(active, patient))
    assert w.septic_patients == 4
    assert w.warned_share == 0.5 and sorted(w.leads) == [3.0, 12.0]
    assert w.late_only_share == 0.25  # patient 1: alerted, but only once sepsis was known
    # false alerts: patient 2's, patient 3's start at hour 5 (< onset - 12) and two in patient 4
    assert w.false_alerts == 4
    assert w.false_patient_days == (4 * 7 + 24) / 24  # hours 1-7 of each septic patient + 24


class SpyModel(OnlineModel):
    """An online model that only records what it is asked, in order (rows carry their
    patient and row number in the first two inputs)."""

    log: ClassVar[list[tuple[str, int, int]]] = []

    def predict(self, Z: np.ndarray) -> np.ndarray:
        SpyModel.log += [("predict", int(z[0]), int(z[1])) for z in Z]
        return np.zeros(len(Z))

    def learn(self, z: np.ndarray, label: int) -> None:
        SpyModel.log.append(("learn", int(z[0]), int(z[1])))


def _overlapping_stays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lengths, admit = (10, 15, 8), np.array([0.0, 3.0, 5.0])  # stays overlap in event time
    patient = np.repeat(np.arange(3), lengths)
    hours = np.concatenate([np.arange(1.0, n + 1) for n in lengths])
    label = np.zeros(len(patient), np.int8)
    label[patient == 1] = np.r_[np.zeros(5), np.ones(10)]
    Z = np.c_[patient, np.arange(len(patient))].astype(float)
    return Z, label, patient, hours, admit


def _replay(fn, *args, **kwargs) -> list[tuple[str, int, int]]:  # type: ignore[no-untyped-def]
    SpyModel.log = []
    fn(SpyModel(None, 1.0), *args, **kwargs)
    return list(SpyModel.log)


def _own_label_before_stay_end(log: list[tuple[str, int, int]]) -> bool:
    last_predict = {p: i for i, (what, p, _) in enumerate(log) if what == "predict"}
    return any(what == "learn" and i < last_predict[p] for i, (what, p, _) in enumerate(log))


def test_withheld_replays_never_learn_a_patients_own_labels_before_its_stay_ends():
    Z, label, patient, hours, admit = _overlapping_stays()
    # today's replay does learn a patient's own labels during its stay: the check can see it
    assert _own_label_before_stay_end(_replay(replay_online, Z, label, patient))
    assert _own_label_before_stay_end(
        _replay(replay_online_event_time, Z, label, patient, hours, admit))
    for log in (_replay(replay_online_withheld, Z, label, patient),
                _replay(replay_online_event_time, Z, label, patient, hours, admit,
                        withhold_own=True, partition=np.array([0, 1, 0]))):
        assert not _own_label_before_stay_end(log)
        assert sorted(k for what, _, k in log if what == "learn") == list(range(len(Z)))
        assert sorted(k for what, _, k in log if what == "predict") == list(range(len(Z)))
    # withheld patients one after another still learn every earlier stay before the next
    log = _replay(replay_online_withheld, Z, label, patient)
    first_predict_1 = next(i for i, (w, p, _) in enumerate(log) if w == "predict" and p == 1)
    assert sum(1 for w, p, _ in log[:first_predict_1] if w == "learn" and p == 0) == 10


def test_event_time_replay_interleaves_stays_and_reproduces_the_sequential_replay():
    Z, label, patient, hours, admit = _overlapping_stays()
    log = _replay(replay_online_event_time, Z, label, patient, hours, admit)
    # patient 1 (admitted at 3 h) is scored before patient 0's stay ends: stays overlap
    assert [p for w, p, _ in log if w == "predict"][:4] == [0, 0, 0, 0]
    assert {p for w, p, _ in log[:12] if w == "predict"} == {0, 1, 2}  # all three on at once
    # a label is learned no earlier than the replay delivers it, and never before its hour
    known = label_known_hours(label, hours, patient)
    at = admit[patient]
    clock = {("predict", k): at[k] + hours[k] for k in range(len(Z))}
    clock |= {("learn", k): at[k] + known[k] for k in range(len(Z))}
    times = [clock[(w, k)] for w, _, k in log]
    assert times == sorted(times)
    assert all(known >= hours)
    # laid end to end with labels 6 h after each hour, it is exactly today's replay
    ends = np.array([hours[patient == p].max() for p in range(3)])
    sequential = np.r_[0.0, np.cumsum(ends + 100.0)[:-1]]
    six_later = np.minimum(hours + 6.0, ends[patient])
    assert (_replay(replay_online_event_time, Z, label, patient, hours, sequential,
                    known_hours=six_later) == _replay(replay_online, Z, label, patient))


def test_label_times_are_the_replays_own(sample_2019):
    """The event-time replay learns each label when the stream's labels topic has it."""
    from vigil.stream.replay.sources import load_stays

    stays = [s for s in load_stays(sample_2019, None) if s.labels]
    hours = np.concatenate([[lb.hours for lb in s.labels] for s in stays])
    label = np.concatenate([[lb.label for lb in s.labels] for s in stays])
    patient = np.concatenate([np.full(len(s.labels), i) for i, s in enumerate(stays)])
    expected = np.concatenate([[lb.known_hours for lb in s.labels] for s in stays])
    assert np.allclose(label_known_hours(label, hours, patient), expected)


def test_bootstrap_weights_give_the_plain_figures_and_those_of_repeated_patients():
    rng = np.random.default_rng(0)
    patient = np.repeat(np.arange(60), 12)
    y = (rng.random(len(patient)) < 0.1).astype(int)
    s = np.round(rng.random(len(patient)) + 0.3 * y, 2)  # ties on purpose
    boot = bootstrap_ranking(y, {"s": s}, patient, resamples=4, seed=3)["s"]
    septic = np.zeros(60, bool)
    np.logical_or.at(septic, patient, y.astype(bool))
    counts = preonset._resample_counts(patient, septic, 4, 3)
    assert (counts[:, septic].sum(1) == septic.sum()).all()  # stratified: same septic count
    for r in range(4):
        rows = np.concatenate([np.repeat(np.flatnonzero(patient == p), counts[r, p])
                               for p in range(60)])
        assert abs(boot["auroc"][r] - auroc(y[rows], s[rows])) < 1e-12
        assert abs(boot["auprc"][r] - auprc(y[rows], s[rows])) < 1e-12


def test_matched_burden_equals_the_best_threshold_within_each_burden_by_brute_force():
    """The vectorised curves agree with warned_before_onset at every threshold: the warned
    share reported at a burden is the best one among thresholds whose false alerts per
    patient-day stay within it; identical scores differ by nothing, in every resample."""
    from vigil.evaluation.preonset import matched_burden

    rng = np.random.default_rng(3)
    label, hours, patient, risk = [], [], [], []
    for p in range(60):
        n = int(rng.integers(20, 50))
        onset = int(rng.integers(14, n)) if p % 4 == 0 else None
        lab = np.zeros(n, np.int8)
        if onset is not None:
            lab[onset - 6:] = 1
        label.append(lab)
        hours.append(np.arange(1.0, n + 1))
        patient.append(np.full(n, p))
        base = rng.random(n) * 0.6 + (0.3 * (np.arange(n) > (onset or n) - 14))
        risk.append(np.round(base, 2))  # few distinct values: every one is a threshold
    label, hours, patient, risk = map(np.concatenate, (label, hours, patient, risk))
    burdens = (0.5, 1.0, 3.0)
    got = matched_burden(label, hours, patient, {"a": risk, "same": risk.copy()},
                         burdens=burdens, reference="a", resamples=20)
    for k, b in enumerate(burdens):
        best = 0.0
        for t in np.unique(risk):
            active = risk >= t
            w = warned_before_onset(label, hours, patient, active,
                                    rising_by_patient(active, patient))
            if w.false_alerts_per_patient_day <= b:
                best = max(best, w.warned_share)
        assert got["scorers"]["a"]["warned_share"][k] == pytest.approx(best)
        assert got["scorers"]["same"]["difference_to_reference"][k] == 0.0
        assert got["scorers"]["same"]["difference_ci95"][k] == [0.0, 0.0]
    assert got["scorers"]["a"]["warned_share"][0] < got["scorers"]["a"]["warned_share"][-1]
