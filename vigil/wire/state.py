"""Per-patient state kept in the changelogged faust table: windows, dedupe ids, alert tracks.

One struct per patient so that one batch of records costs one table write (one changelog
record) per patient, whatever the number of records. The table holds the msgpack bytes
(``value_type=bytes``): compact in memory, and faust's recovery needs no codec of ours.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct

__all__ = ["Series", "AlertTrack", "PatientState", "copy_track", "encode_state", "decode_state"]


class Series(Struct, array_like=True):
    """Points of one code in ascending event time (ms); older points are pruned."""

    t: list[int]
    v: list[float]


class AlertTrack(Struct, array_like=True, omit_defaults=True):
    """Where one alert kind stands for one patient (see :mod:`vigil.alerts.lifecycle`)."""

    active: bool = False
    episode_start_ms: int = -1
    severity: str = ""
    below_since_ms: int = -1
    last_ms: int = -1
    episodes: int = 0
    # appended fields keep older array-encoded states decodable
    peak: str = ""  # highest severity of the current (or last) episode
    resolved_ms: int = -1  # when the last episode resolved: the refractory period's start
    ack_due_from_ms: int = -1  # raise or last severity escalation: the escalation clock
    acked_ms: int = -1
    acked_by: str = ""
    unacked_escalated: bool = False
    trend: list[float] = msgspec.field(default_factory=list)  # recent risks, oldest first


class PatientState(Struct, omit_defaults=True):
    watermark_ms: int = -1
    partition: int = -1  # source partition of the patient's records
    offset: int = -1  # last applied offset in that partition: the redelivery guard
    records: int = 0
    pruned_ms: int = -1  # watermark at the last pruning
    series: dict[str, Series] = msgspec.field(default_factory=dict)
    recent_ids: dict[str, int] = msgspec.field(default_factory=dict)  # record id -> event ms
    icu_admit_ms: int | None = None
    hospital_admit_ms: int | None = None
    age_years: float | None = None
    sex: str | None = None
    unit: str | None = None
    bed: str | None = None
    alerts: dict[str, AlertTrack] = msgspec.field(default_factory=dict)
    # Kafka timestamp minus event time of the newest accepted record: small for a live feed,
    # large for a replay of old data (the wall-clock escalation sweep only acts on live feeds)
    ingest_lag_ms: int | None = None
    processed_at_ms: int = -1  # wall clock of the last batch that touched it: the TTL's clock


def copy_track(track: AlertTrack) -> AlertTrack:
    """An independent copy (its ``trend`` list too): a snapshot for an event, or a change
    that must not touch the cached state until it is stored."""
    return msgspec.structs.replace(track, trend=list(track.trend))


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(PatientState)


def encode_state(state: PatientState) -> bytes:
    return _ENC.encode(state)


def decode_state(raw: bytes) -> PatientState:
    return _DEC.decode(raw)
