"""Validation at the door: one test per rule, on payloads as integrations would send them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from vigil.stream.validation import Accepted, Refused, record_id_of, validate
from vigil.wire.codes import CODES, convert

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def payload(obs=None, **over) -> bytes:
    rec = {"patient": "pt-1", "event_time": NOW.isoformat(),
           "observations": obs if obs is not None else [{"code": "HR", "value": 80, "unit": "/min"}]}
    rec.update(over)
    return json.dumps({k: v for k, v in rec.items() if v is not ...}).encode()


def check(raw: bytes, skew_ms: int = 300_000) -> Accepted | Refused:
    return validate(raw, NOW_MS, skew_ms)


def reasons(out) -> list[str]:
    return [r.reason for r in out.rejections]


def test_valid_record_is_accepted_in_canonical_units() -> None:
    out = check(payload([{"code": "HR", "value": 80, "unit": "/min"},
                         {"code": "Temp", "value": 98.6, "unit": "[degF]"}]))
    assert isinstance(out, Accepted)
    assert out.observations == [("HR", 80.0), ("Temp", pytest.approx(37.0))]
    assert out.rejections == []
    assert out.event_ms == NOW_MS


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe\x00", b'{"patient": "p1", '])
def test_malformed_json_is_refused(raw: bytes) -> None:
    out = check(raw)
    assert isinstance(out, Refused) and reasons(out) == ["malformed_json"]


@pytest.mark.parametrize("over", [
    {"patient": ...},                      # missing patient
    {"event_time": ...},                   # missing time
    {"observations": []},                  # nothing measured
    {"event_time": "2026-06-01T12:00:00"},  # no time zone: ambiguous, refused
    {"event_time": "yesterday"},
    {"patient": "has spaces"},
    {"patient": 42},
])
def test_schema_violations_are_refused(over) -> None:
    out = check(payload(**over))
    assert isinstance(out, Refused) and reasons(out) == ["schema"]


def test_observation_value_must_be_a_number() -> None:
    out = check(payload([{"code": "HR", "value": "eighty", "unit": "/min"}]))
    assert isinstance(out, Refused) and reasons(out) == ["schema"]


def test_unknown_code_is_refused_with_the_code() -> None:
    out = check(payload([{"code": "Mood", "value": 3, "unit": ""}]))
    assert isinstance(out, Refused)
    assert reasons(out) == ["unknown_code"] and out.rejections[0].code == "Mood"


def test_unknown_unit_is_refused_not_guessed() -> None:
    out = check(payload([{"code": "Temp", "value": 37, "unit": "furlongs"}]))
    assert isinstance(out, Refused) and reasons(out) == ["unknown_unit"]


def test_missing_unit_means_the_canonical_unit() -> None:
    out = check(payload([{"code": "HR", "value": 72}]))
    assert isinstance(out, Accepted) and out.observations == [("HR", 72.0)]


@pytest.mark.parametrize("code,value,unit,expected", [
    ("Temp", 101.3, "[degF]", 38.5),
    ("Temp", 310.15, "K", 37.0),
    ("SBP", 16.0, "kPa", 120.0),
    ("Lactate", 36.0, "mg/dL", 3.996),
    ("FiO2", 40, "%", 0.40),
    ("Creatinine", 88.42, "umol/L", 1.0),
    ("Glucose", 5.5, "mmol/L", 99.09),
    ("HR", 60, "bpm", 60.0),
])
def test_unit_conversion(code, value, unit, expected) -> None:
    out = check(payload([{"code": code, "value": value, "unit": unit}]))
    assert isinstance(out, Accepted)
    assert out.observations[0][1] == pytest.approx(expected, rel=1e-3)
    assert convert(code, value, unit) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("code,value", [("HR", 900), ("HR", -1), ("SpO2", 101), ("Temp", -17.8),
                                        ("pH", 735), ("RR", 121), ("FiO2", 0.1)])
def test_implausible_values_are_refused_not_clipped(code, value) -> None:
    out = check(payload([{"code": code, "value": value, "unit": CODES[code].unit}]))
    assert isinstance(out, Refused) and reasons(out) == ["implausible"]
    assert out.rejections[0].value == value


@pytest.mark.parametrize("code,value", [("HR", 0), ("HR", 350), ("SpO2", 40), ("Temp", 13.7)])
def test_extreme_but_possible_values_pass(code, value) -> None:
    assert isinstance(check(payload([{"code": code, "value": value}])), Accepted)


def test_implausible_after_conversion_is_judged_in_canonical_units() -> None:
    # 120 °F is 48.9 °C: a unit that parses does not make the value plausible
    out = check(payload([{"code": "Temp", "value": 120, "unit": "[degF]"}]))
    assert isinstance(out, Refused) and reasons(out) == ["implausible"]


def test_one_bad_observation_refuses_only_itself() -> None:
    out = check(payload([{"code": "HR", "value": 900, "unit": "/min"},
                         {"code": "SpO2", "value": 97, "unit": "%"},
                         {"code": "Nope", "value": 1}]))
    assert isinstance(out, Accepted)
    assert out.observations == [("SpO2", 97.0)]
    assert sorted(reasons(out)) == ["implausible", "unknown_code"]


def test_event_from_the_future_is_refused_beyond_the_skew() -> None:
    soon = (NOW + timedelta(seconds=200)).isoformat()
    later = (NOW + timedelta(seconds=400)).isoformat()
    assert isinstance(check(payload(event_time=soon), skew_ms=300_000), Accepted)
    out = check(payload(event_time=later), skew_ms=300_000)
    assert isinstance(out, Refused) and reasons(out) == ["future"]


def test_time_zones_are_normalised() -> None:
    a = check(payload(event_time="2026-06-01T14:00:00+02:00"))
    assert isinstance(a, Accepted) and a.event_ms == NOW_MS


def test_record_id_is_the_source_message_id_or_a_content_hash() -> None:
    a = check(payload(event_id="MSG1", source="mon-3"))
    b = check(payload(event_id="MSG1", source="mon-4"))
    assert a.record_id == "mon-3:MSG1" and b.record_id != a.record_id
    c = check(payload())
    d = check(payload())
    e = check(payload([{"code": "HR", "value": 81, "unit": "/min"}]))
    assert c.record_id == d.record_id != e.record_id
    assert record_id_of(c.record) == c.record_id


# --- undecodable values (issue 13): a dead letter with a reason, never an exception --------

def test_a_tombstone_is_refused_as_malformed_json() -> None:
    # any producer can send a null value; before issue 13 validate raised TypeError here
    out = validate(None, NOW_MS, 300_000)
    assert isinstance(out, Refused) and reasons(out) == ["malformed_json"]
    assert "tombstone" in out.rejections[0].detail


def _with_raw(field_json: bytes) -> bytes:
    return (b'{"patient": "pt-1", "event_time": "2026-06-01T12:00:00Z", '
            b'"observations": [{"code": "HR", "value": 80, "unit": "/min"}], ' + field_json + b"}")


@pytest.mark.parametrize("raw", [
    _with_raw(b'"bed": "B\xe9-07"'),             # Latin-1 in a field Vigil reads
    _with_raw(b'"note": "caf\xe9"'),             # ... and in one it ignores
    _with_raw(b'"bed": "\xed\xa0\x80"'),         # an encoded UTF-16 surrogate
    _with_raw(b'"bed": "\xc3"'),                 # a truncated sequence
    b'{"patient": "pt-\xff", "event_time": "2026-06-01T12:00:00Z", "observations": []}',
])
def test_invalid_utf8_anywhere_is_malformed_json(raw: bytes) -> None:
    # before issue 13: UnicodeDecodeError (filed as internal_error) or, in an ignored field,
    # accepted; the same producer's records were refused or not depending on the field
    out = check(raw)
    assert isinstance(out, Refused) and reasons(out) == ["malformed_json"]
    assert "UTF-8" in out.rejections[0].detail


def test_deep_nesting_in_an_ignored_field_is_malformed_json() -> None:
    # before issue 13: RecursionError escaped from the decoder
    out = check(_with_raw(b'"extra": ' + b"[" * 10_000 + b"]" * 10_000))
    assert isinstance(out, Refused) and reasons(out) == ["malformed_json"]


def test_utf8_text_in_string_fields_is_accepted() -> None:
    out = check(payload(bed="Bett-7 ü", unit="Intensivstation ✚"))
    assert isinstance(out, Accepted) and out.record.bed == "Bett-7 ü"


# --- implausible event times (issue 13) ---------------------------------------------------

@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
                                  "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z",
                                  "1989-12-31T23:59:59.999Z"])
def test_event_times_before_the_floor_are_refused(when: str) -> None:
    # before issue 13 these were accepted and scored (a monitor with its clock reset)
    out = check(payload(event_time=when))
    assert isinstance(out, Refused) and reasons(out) == ["implausible_time"]
    assert out.patient == "pt-1"  # dead-lettered under the patient's key


def test_the_floor_itself_is_accepted() -> None:
    from vigil.stream.validation import TIME_FLOOR_MS

    assert TIME_FLOOR_MS == int(datetime(1990, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert isinstance(check(payload(event_time="1990-01-01T00:00:00Z")), Accepted)


def _info(**admits: timedelta) -> dict:
    return {k: (NOW + v).isoformat() for k, v in admits.items()}


@pytest.mark.parametrize("info,ok", [
    (_info(hospital_admit_time=timedelta(hours=23)), True),    # pre-admission lab, same day
    (_info(hospital_admit_time=timedelta(hours=25)), False),   # a day before admission
    (_info(icu_admit_time=timedelta(hours=23)), True),
    (_info(icu_admit_time=timedelta(days=3)), False),
    # ward data before ICU admission, after hospital admission: plausible
    (_info(hospital_admit_time=timedelta(days=-5), icu_admit_time=timedelta(days=3)), True),
    (_info(hospital_admit_time=timedelta(days=2), icu_admit_time=timedelta(days=3)), False),
    ({}, True),
])
def test_event_times_long_before_the_stated_admission_are_refused(info: dict, ok: bool) -> None:
    out = check(payload(patient_info=info))
    assert isinstance(out, Accepted) is ok
    if not ok:
        assert reasons(out) == ["implausible_time"] and "admission" in out.rejections[0].detail


def test_implausible_time_survives_the_dead_letter_round_trip() -> None:
    # the reason is part of the wire schema: a DLQ consumer must be able to decode it
    import msgspec

    from vigil.wire.records import REJECTION_REASONS, Rejection, encode

    out = check(payload(event_time="1970-01-01T00:00:00Z"))
    rejection = out.rejections[0]
    assert msgspec.json.decode(encode(rejection), type=Rejection) == rejection
    assert "implausible_time" in REJECTION_REASONS


def test_no_shipped_sample_record_is_refused_for_its_time() -> None:
    """The whole shipped sample, as ``vigil replay`` sends it, passes the time checks."""
    import time

    from vigil.sample import sample_path
    from vigil.stream.replay.sources import load_stays
    from vigil.stream.replay.timeline import Timeline

    stays = load_stays(sample_path())
    now = int(time.time() * 1000)
    timeline = Timeline(stays, "sample-key", now_ms=now)
    vitals = [r for r in timeline if r.topic == "vitals"]
    assert len(vitals) == timeline.n_vitals > 1000
    outs = [validate(r.value, now, 0) for r in vitals]
    assert all(isinstance(o, Accepted) for o in outs)
    assert not any(r.reason == "implausible_time" for o in outs for r in o.rejections)
