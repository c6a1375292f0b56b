"""``scores.csv.gz``: every scored hour of an evaluation, so its figures can be recomputed.

One row per hour the evaluation judged, in the report's row order (patient, then hour):
the data set, the data set's own patient id (e.g. PhysioNet's ``p000001``, so rows can be
joined back to the published files), hours since ICU admission, the label, each scorer's
risk (columns named as in ``metrics.json``) and the deployed score's alert level after the
alert lifecycle (the active alert's severity, empty when none is active). With it, any
figure of the report can be recomputed with a spreadsheet or a few lines of pandas,
without Vigil: thresholds are in ``metrics.json`` (``scorers.<name>.threshold``).
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np

from vigil.stream.offline import FeatureTable

__all__ = ["FIXED_COLUMNS", "RISK_DIGITS", "write_scores"]

FIXED_COLUMNS = ("dataset", "patient_id", "hour", "label")
ALERT_COLUMN = "deployed_alert"
#: significant digits of each risk: ranks and AUROC to well under 1e-4, at half the size of
#: full precision (the file is committed next to the report)
RISK_DIGITS = 7


def write_scores(path: Path, table: FeatureTable, rows: np.ndarray,
                 risks: dict[str, tuple[np.ndarray, float]],
                 deployed_alert: np.ndarray | None) -> dict:
    """Write the per-hour scores of ``rows`` (table rows) to ``path``; say what it holds.

    The gzip header carries no time stamp, so the same evaluation writes the same bytes.
    """
    path = Path(path)
    names = list(risks)
    pat = table.patient[rows]
    source = np.asarray(table.source_ids, dtype=object)[pat]
    dataset = np.asarray(table.datasets, dtype=object)[pat]
    hours = table.hours[rows]
    label = table.label[rows]
    fmt = f"%.{RISK_DIGITS}g"
    columns = [np.char.mod(fmt, np.asarray(risks[n][0], np.float64)) for n in names]
    alert = (deployed_alert if deployed_alert is not None
             else np.full(len(rows), "", dtype=object))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*FIXED_COLUMNS, *names, ALERT_COLUMN])
    hour_text = np.char.mod("%g", hours.astype(np.float64))
    for i in range(len(rows)):
        writer.writerow([dataset[i], source[i], hour_text[i], int(label[i]),
                         *(c[i] for c in columns), alert[i]])
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                filename="") as gz:
        gz.write(buf.getvalue().encode())
    return {"file": path.name, "rows": int(len(rows)),
            "columns": [*FIXED_COLUMNS, *names, ALERT_COLUMN],
            "risk_significant_digits": RISK_DIGITS}
