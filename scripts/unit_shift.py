"""Unit shift: how much a model loses on an ICU type it was not trained on.

The deployed models will be judged on another hospital's data that we do not have. The
shift we *can* measure is between ICU types of one data set: train on one, test on the
same type's held-out patients and on the other type's patients. LightGBM stands in for the
stack (it carries most of both stacks and trains in a minute); the same features, the same
patient split rule (80/20, stratified by outcome, seed 42, 20% of training for early
stopping).

    python scripts/unit_shift.py --data ../shared/data/physionet2019_training_setA.tar.gz
    python scripts/unit_shift.py --data ../shared/data/physionet2012_set-a.tar.gz

Sepsis (2019: units MICU / SICU) is judged on the hours before onset (pre-onset AUROC);
deterioration (2012: medical MICU + CCU / surgical SICU + CSRU) on each stay's highest
score. Prints a table and one JSON line; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vigil.evaluation.data import feature_table
from vigil.evaluation.deterioration import highest_so_far
from vigil.evaluation.metrics import auroc, patient_groups, split_by_patient
from vigil.evaluation.preonset import pre_onset_rows
from vigil.models.gbm import train_gbm
from vigil.settings import VigilSettings

GROUPS = {"physionet2019": {"MICU": ("MICU",), "SICU": ("SICU",)},
          "physionet2012": {"medical (MICU, CCU)": ("MICU", "CCU"),
                            "surgical (SICU, CSRU)": ("SICU", "CSRU")}}


def _judge(dataset: str, y: np.ndarray, risk: np.ndarray, hours: np.ndarray,
           patient: np.ndarray) -> float:
    if dataset == "physionet2019":
        keep = pre_onset_rows(y, hours, patient)
        return auroc(y[keep], risk[keep])
    groups = patient_groups(patient)
    return auroc(np.array([y[g[0]] for g in groups]), highest_so_far(risk, hours, groups, None))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    t = feature_table(args.data, VigilSettings())
    dataset = t.datasets[0]
    units = np.array([u or "" for u in t.units], dtype=object)
    positive = np.zeros(t.n_patients, bool)
    np.logical_or.at(positive, t.patient, t.label > 0)
    result: dict = {"data": str(args.data), "dataset": dataset, "model": "LightGBM",
                    "judged_on": "pre-onset hours" if dataset == "physionet2019"
                    else "highest score per stay", "trained_on": {}}
    names = list(GROUPS[dataset])
    members = {n: np.flatnonzero(np.isin(units, GROUPS[dataset][n])) for n in names}
    splits = {}
    for name in names:
        mine = members[name]
        train, test = split_by_patient(positive[mine], 0.2, 42)
        fit, val = split_by_patient(positive[mine][train], 0.2, 43)
        splits[name] = (mine[train][fit], mine[train][val], mine[test])
    for name in names:
        fit, val, _ = splits[name]
        rf, rv = t.rows_of(fit), t.rows_of(val)
        gbm = train_gbm(t.X[rf], t.label[rf], t.X[rv], t.label[rv], seed=42)
        entry: dict = {"patients_fit": len(fit)}
        for other in names:  # every unit's held-out patients: the same ones for both models
            pats = splits[other][2]
            rows = np.flatnonzero(t.rows_of(pats))
            entry[other] = {"patients": len(pats), "auroc": round(_judge(
                dataset, t.label[rows], gbm.predict(t.X[rows]), t.hours[rows],
                t.patient[rows]), 4)}
        result["trained_on"][name] = entry
        print(f"trained on {name}: " + ", ".join(
            f"{o} {entry[o]['auroc']:.3f}" for o in names), file=sys.stderr)
    for name in names:
        other = next(o for o in names if o != name)
        # what the other unit's patients lose with this unit's model instead of their own
        result["trained_on"][name][f"shift_on_{other}"] = round(
            result["trained_on"][name][other]["auroc"]
            - result["trained_on"][other][other]["auroc"], 4)
    line = json.dumps(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
