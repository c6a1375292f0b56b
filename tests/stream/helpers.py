"""Builders for validated records in unit tests."""

from __future__ import annotations

from datetime import UTC, datetime

from vigil.stream.validation import Accepted, record_id_of
from vigil.wire.records import Observation, PatientInfo, VitalsRecord

HOUR = 3_600_000
T0 = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)


def acc(t_ms: int, patient: str = "pt-1", event_id: str | None = None,
        info: PatientInfo | None = None, **obs: float) -> Accepted:
    rec = VitalsRecord(
        patient=patient,
        event_time=datetime.fromtimestamp(t_ms / 1000, tz=UTC),
        observations=[Observation(c, float(v)) for c, v in obs.items()],
        event_id=event_id,
        patient_info=info,
    )
    return Accepted(rec, record_id_of(rec), t_ms, [(c, float(v)) for c, v in obs.items()])
