"""The pre-onset tables of docs/evaluation/pre-onset.md, from an evaluation's metrics.json.

    python scripts/pre_onset_tables.py docs/evaluation/sepsis-setA-heldout/metrics.json

Prints Markdown: every scorer before onset, the lifecycle's warnings, the paired
differences; paste it under "Held-out set A" so the page never drifts from the report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _ci(v: list | None, digits: int = 3) -> str:
    return f" ({v[0]:.{digits}f}–{v[1]:.{digits}f})" if v else ""


def _signed(x: float) -> str:
    return f"{x:+.3f}"


def tables(report: dict) -> str:
    p = report["pre_onset"]
    out = [f"Held-out 20% of set A: {p['patients']:,} patients ({p['septic_patients']} septic), "
           f"{p['rows']:,} pre-onset hours ({p['positive_rows']:,} labelled positive); "
           "thresholds as shipped. 95% intervals: patient bootstrap, "
           f"{p['bootstrap']['resamples']} resamples.", "",
           "| scorer | AUROC / AUPRC, all hours | AUROC before onset (95% CI) | AUPRC before "
           "onset (95% CI) | warned in [onset − 12 h, onset) | alerted only after onset (no "
           "warning) | median lead (h) | false alerts / patient-day before onset |",
           "|---|---|---|---|---|---|---|---|"]
    for name, m in p["scorers"].items():
        lead = m["median_lead_hours"]
        out.append(f"| {name} | {m['all_hours_auroc']:.3f} / {m['all_hours_auprc']:.3f} | "
                   f"{m['auroc']:.3f}{_ci(m.get('auroc_ci95'))} | "
                   f"{m['auprc']:.3f}{_ci(m.get('auprc_ci95'))} | {m['warned_share']:.1%} | "
                   f"{m['late_only_share']:.1%} | {'—' if lead is None else f'{lead:g}'} | "
                   f"{m['false_alerts_per_patient_day']:.2f} |")
    out += ["", "Through the alert lifecycle (deployed levels; NEWS2 ≥ 5 with its published "
            "levels):", "", "| score | warned in [onset − 12 h, onset) | alerted only after "
            "onset | median lead (h) | false alerts / patient-day before onset |",
            "|---|---|---|---|---|"]
    for name, m in p["lifecycle"].items():
        out.append(f"| {name} | {m['warned_share']:.1%} | {m['late_only_share']:.1%} | "
                   f"{m['median_lead_hours']:g} | {m['false_alerts_per_patient_day']:.2f} |")
    out += ["", "Paired AUROC differences (same bootstrap resamples):", "",
            "| difference | before onset | all hours |", "|---|---|---|"]
    all_hours = p["online_learning"].get("all_hours", {})
    for key, d in p["differences"].items():
        alt = all_hours.get(key)
        out.append(f"| {key} ({d['minuend']} − {d['subtrahend']}) | {_signed(d['auroc'])} "
                   f"({_signed(d['auroc_ci95'][0])} to {_signed(d['auroc_ci95'][1])}) | "
                   + (f"{_signed(alt['auroc'])} ({_signed(alt['auroc_ci95'][0])} to "
                      f"{_signed(alt['auroc_ci95'][1])})" if alt else "—") + " |")
    return "\n".join(out)


if __name__ == "__main__":
    print(tables(json.loads(Path(sys.argv[1]).read_text())))
