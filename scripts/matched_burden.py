"""Septic patients warned before onset at matched false-alert burdens, from scores.csv.gz.

    python scripts/matched_burden.py docs/evaluation/sepsis-setA-heldout/scores.csv.gz

Each scorer's threshold is set so that its raw false alerts per patient-day before onset
stay within 0.5, 0.7 and 1.0 (vigil.evaluation.preonset.matched_burden): the curves
compared at equal alert burden, with paired patient-bootstrap intervals of the difference
to LightGBM. Prints a Markdown table for docs/evaluation/pre-onset.md.
"""

from __future__ import annotations

import csv
import gzip
import sys

import numpy as np

from vigil.evaluation.preonset import matched_burden

SCORERS = ("gbm", "hybrid-quantum", "hybrid-classical", "deployed (hybrid + gbm + online)",
           "deployed, no online learning", "deployed, without the circuit",
           "deployed, classical layer for the circuit", "deployed, event time")


def main(path: str) -> None:
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    rows = [r for r in rows if r["dataset"] == "physionet2019"]
    rows.sort(key=lambda r: (r["patient_id"], float(r["hour"])))
    patient = np.array([r["patient_id"] for r in rows])
    hours = np.array([float(r["hour"]) for r in rows])
    y = np.array([int(float(r["label"])) for r in rows])
    scores = {n: np.array([float(r[n]) for r in rows]) for n in SCORERS if n in rows[0]}
    print(f"{len(rows):,} hours of {len(np.unique(patient)):,} patients", file=sys.stderr)
    report = matched_burden(y, hours, patient, scores, reference="gbm")
    burdens = report["burdens_per_patient_day"]
    head = " | ".join(f"warned at ≤ {b:g} false alerts/patient-day (Δ vs gbm, 95% CI)"
                      for b in burdens)
    print(f"| scorer | {head} |")
    print("|---|" + "---|" * len(burdens))
    for name, m in report["scorers"].items():
        cells = []
        for k, share in enumerate(m["warned_share"]):
            if "difference_to_reference" in m:
                d, (lo, hi) = m["difference_to_reference"][k], m["difference_ci95"][k]
                cells.append(f"{share:.1%} ({d * 100:+.1f} pts, {lo * 100:+.1f} to {hi * 100:+.1f})")
            else:
                cells.append(f"{share:.1%}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
