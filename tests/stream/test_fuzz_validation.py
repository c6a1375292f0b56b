"""Fuzzing the door: the wire decoder and ``validate`` over random and adversarial payloads.

Any producer can write anything to ``vigil.vitals``; the worker must turn each value into
exactly one accepted record or one dead letter with a documented reason, and never raise.
Hypothesis generates the values; the properties checked on every one are in
:func:`door_contract`.

Profiles (no global hypothesis settings are changed; each test carries its own):

- ``ci`` (default): derandomized, so CI runs the same examples on every run, and a modest
  example count so the file runs in well under a minute on 2 cores.
- ``long``: random, 20x the examples (a few minutes); for a fuzzing session, not CI::

      VIGIL_FUZZ_PROFILE=long .venv/bin/python -m pytest tests/stream/test_fuzz_validation.py

To see how many examples each test ran (and the outcomes and reasons it reached, recorded
with ``hypothesis.event``)::

      .venv/bin/python -m pytest tests/stream/test_fuzz_validation.py --hypothesis-show-statistics
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import (
    HealthCheck,
    Phase,
    currently_in_test_context,
    event,
    find,
    given,
    settings,
)
from hypothesis import strategies as st

from vigil.stream.validation import TIME_FLOOR_MS, Accepted, Refused, validate
from vigil.wire.codes import CODES
from vigil.wire.records import (
    ACK_DECODER,
    LABEL_DECODER,
    REJECTION_REASONS,
    VITALS_DECODER,
    Rejection,
    VitalsRecord,
    decode_wire,
    encode,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
SKEW_MS = 300_000

RECORD_REASONS = frozenset({"malformed_json", "schema", "future", "implausible_time"})
"""Reasons that refuse a record as a whole (one rejection)."""
OBSERVATION_REASONS = frozenset({"unknown_code", "unknown_unit", "implausible", "not_finite"})
"""Reasons that refuse one observation (one rejection per refused observation)."""
DOOR_REASONS = RECORD_REASONS | OBSERVATION_REASONS

_PROFILES = {
    "ci": settings(derandomize=True, max_examples=200, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]),
    "long": settings(derandomize=False, max_examples=4000, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]),
}
PROFILE = os.environ.get("VIGIL_FUZZ_PROFILE", "ci")
if PROFILE not in _PROFILES:
    raise RuntimeError(f"VIGIL_FUZZ_PROFILE={PROFILE!r}: expected one of {sorted(_PROFILES)}")
FUZZ = _PROFILES[PROFILE]
HEAVY = settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 5))  # MB-sized payloads


# --- the contract ---------------------------------------------------------------------------

def door_contract(payload: bytes | None, n_obs: int | None = None) -> Accepted | Refused:
    """Validate ``payload`` and check every property the worker relies on.

    ``n_obs`` is the number of observations the generator put in the payload, when it knows
    that the observations are a well-formed list.
    """
    out = validate(payload, NOW_MS, SKEW_MS)  # no exception may escape: the test fails if one does
    assert type(out) in (Accepted, Refused)
    assert out.rejections is not None
    for r in out.rejections:
        assert r.reason in DOOR_REASONS <= REJECTION_REASONS
        # every rejection must travel in a dead letter: encodable and decoded back unchanged
        assert msgspec.json.decode(encode(r), type=Rejection) == r
        _event(f"reason: {r.reason}")
    _event(f"outcome: {type(out).__name__}")
    if isinstance(out, Accepted):
        _accepted_contract(out, n_obs)
    else:
        _refused_contract(out, payload, n_obs)
    return out


def _event(name: str) -> None:
    """Count an outcome in ``--hypothesis-show-statistics`` (only inside a hypothesis test)."""
    if currently_in_test_context():
        event(name)


def _accepted_contract(out: Accepted, n_obs: int | None) -> None:
    assert isinstance(out.record, VitalsRecord)
    assert out.observations, "an accepted record has at least one observation"
    for code, value in out.observations:
        spec = CODES[code]
        assert math.isfinite(value) and spec.plausible(value), (code, value)
    assert {r.reason for r in out.rejections} <= OBSERVATION_REASONS
    # nothing dropped silently: every observation is used or listed as refused
    assert len(out.observations) + len(out.rejections) == len(out.record.observations)
    if n_obs is not None:
        assert len(out.record.observations) == n_obs
    assert TIME_FLOOR_MS <= out.event_ms <= NOW_MS + SKEW_MS
    assert out.record_id and out.record_id == validate(encode(out.record), NOW_MS,
                                                       SKEW_MS).record_id


def _refused_contract(out: Refused, payload: bytes | None, n_obs: int | None) -> None:
    assert out.rejections, "a refused record carries at least one reason"
    reasons = {r.reason for r in out.rejections}
    if reasons & RECORD_REASONS:
        assert len(out.rejections) == 1, out.rejections
        return
    # refused because no observation was usable: one rejection per observation
    assert reasons <= OBSERVATION_REASONS
    record = VITALS_DECODER.decode(payload)
    assert len(out.rejections) == len(record.observations)
    if n_obs is not None:
        assert len(out.rejections) == n_obs
    assert out.patient == record.patient


# --- strategies -----------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)  # any encodable text
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(10**40), 10**40)
                | st.floats(allow_nan=True, allow_infinity=True) | TEXT)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
KNOWN_CODES = sorted(CODES)


OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
"""UTC offsets as RFC 3339 can write them (whole minutes, under 24 h)."""


@st.composite
def times(draw: st.DrawFn, hostile: bool = True) -> object:
    """Event times: mostly near now, else anywhere in years 1..9999; hostile ones may also
    lack a zone or not be a time at all."""
    near = st.integers(-30 * 86_400_000, SKEW_MS * 2).map(
        lambda d: datetime.fromtimestamp((NOW_MS + d) / 1000, tz=UTC))
    anywhere = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
    kinds = ["near"] * 6 + ["anywhere", "anywhere"] + (["naive", "junk"] if hostile else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "near":
        t = draw(near)
        return t.astimezone(draw(OFFSETS)).isoformat() if draw(st.booleans()) else t.isoformat()
    if kind == "anywhere":
        return draw(anywhere).replace(tzinfo=draw(OFFSETS)).isoformat()
    if kind == "naive":
        return draw(st.one_of(near, anywhere)).replace(tzinfo=None).isoformat()
    return draw(JSON_VALUES)


@st.composite
def observations(draw: st.DrawFn, hostile: bool = True) -> object:
    """One observation: a known code in a unit it converts from, or an unknown code or unit,
    with a value in or out of range; hostile ones may have any shape and types."""
    if hostile and draw(st.integers(0, 4)) == 0:
        return draw(JSON_VALUES)  # not an object at all, or one of the wrong shape
    code = draw(st.sampled_from(KNOWN_CODES) if draw(st.integers(0, 4)) else TEXT)
    spec = CODES.get(code)
    obs: dict[str, object] = {"code": code}
    if spec is not None and draw(st.integers(0, 2)):
        obs["value"] = draw(st.floats(spec.low, spec.high))  # plausible in the canonical unit
        obs["unit"] = draw(st.sampled_from([spec.unit, spec.unit.upper(), ""]))
    else:
        values = st.floats(allow_infinity=False, allow_nan=False) | st.integers(-(10**6), 10**6)
        if hostile:
            values = values | st.floats() | st.integers(-(10**400), 10**400) | JSON_VALUES
        obs["value"] = draw(values)
        units = sorted(spec.units) if spec is not None else []
        obs["unit"] = draw(st.sampled_from(units) | TEXT) if units else draw(TEXT)
    if draw(st.booleans()):
        obs["method"] = draw(TEXT | JSON_VALUES if hostile else st.text(max_size=64))
    if draw(st.integers(0, 4)) == 0:
        obs[draw(TEXT)] = draw(JSON_VALUES)  # an extra field (a known one, if it hits one)
    return obs


@st.composite
def patient_infos(draw: st.DrawFn, hostile: bool = True) -> object:
    """``patient_info`` with any subset of its fields; hostile: wrong types in every field,
    or not an object at all."""
    if hostile and draw(st.integers(0, 3)) == 0:
        return draw(JSON_VALUES)
    fields = {
        "age_years": st.floats(0, 130),
        "sex": st.sampled_from(["female", "male", "other", "unknown"]),
        "icu_admit_time": times(hostile),
        "hospital_admit_time": times(hostile),
    }
    if hostile:
        fields["age_years"] = fields["age_years"] | st.floats() | JSON_VALUES
        fields["sex"] = fields["sex"] | JSON_VALUES
    return {k: draw(v) for k, v in fields.items() if draw(st.booleans())}


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """A vitals payload and its observation count (None when the list itself is mangled).

    Half of them are well-formed (right shapes and types, any codes, units, values and
    times), so that the checks behind the schema get fuzzed too; the other half are hostile
    in every field.
    """
    hostile = draw(st.booleans())
    junk = TEXT | JSON_VALUES if hostile else st.text(max_size=64)
    obs = draw(st.lists(observations(hostile), min_size=0 if hostile else 1, max_size=8))
    rec: dict[str, object] = {
        "patient": draw(st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z") | (junk if hostile
                                                                     else st.nothing())),
        "event_time": draw(times(hostile)),
        "observations": obs,
    }
    for name in ("event_id", "unit", "bed", "source"):
        if draw(st.booleans()):
            rec[name] = draw(junk)
    if draw(st.booleans()):
        rec["patient_info"] = draw(patient_infos(hostile))
    if draw(st.integers(0, 3)) == 0:
        rec[draw(TEXT)] = draw(JSON_VALUES)  # an extra field; hostile ones may clobber
    n_obs: int | None = len(obs)
    if hostile:
        mangle = draw(st.sampled_from(["none", "none", "drop", "observations"]))
        if mangle == "drop":
            del rec[draw(st.sampled_from(sorted(rec)))]
        elif mangle == "observations":
            rec["observations"] = draw(JSON_VALUES)
    if not isinstance(rec.get("observations"), list) or rec["observations"] is not obs:
        n_obs = None  # replaced by an extra field or by the mangling
    raw = json.dumps(rec, ensure_ascii=draw(st.booleans()), allow_nan=True).encode()
    return raw, n_obs


def _valid(code: str = "HR", value: float = 80, unit: str = "/min", **over: object) -> dict:
    rec = {"patient": "pt-1", "event_time": NOW.isoformat(),
           "observations": [{"code": code, "value": value, "unit": unit}]}
    rec.update(over)
    return rec


# --- properties -----------------------------------------------------------------------------

@FUZZ
@given(records())
def test_structured_records_meet_the_door_contract(rec: tuple[bytes, int | None]) -> None:
    door_contract(*rec)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_meet_the_door_contract(raw: bytes) -> None:
    door_contract(raw)


@FUZZ
@given(records(), st.data())
def test_mangled_bytes_meet_the_door_contract(rec: tuple[bytes, int | None],
                                              data: st.DataObject) -> None:
    """Valid-looking payloads with bytes replaced, cut off, or invalid UTF-8 spliced in."""
    raw = bytearray(rec[0])
    junk = data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe9", b"\x00",
                                      b"\\ud800", b"NaN", b"Infinity", b"-Infinity", b"1e400"])
                     | st.binary(min_size=1, max_size=8))
    at = data.draw(st.integers(0, len(raw)))
    how = data.draw(st.sampled_from(["insert", "replace", "truncate"]))
    if how == "insert":
        raw[at:at] = junk
    elif how == "replace":
        raw[at:at + len(junk)] = junk
    else:
        del raw[at:]
    out = door_contract(bytes(raw))
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        assert isinstance(out, Refused) and out.rejections[0].reason == "malformed_json"


def test_a_tombstone_meets_the_door_contract() -> None:
    out = door_contract(None)
    assert isinstance(out, Refused) and out.rejections[0].reason == "malformed_json"


@FUZZ
@given(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "nan", "inf",
                        "1e-400", "-0", "0e0", "1E+2", "null", "true", '"80"', "[80]"]),
       st.sampled_from(KNOWN_CODES))
def test_non_finite_literals_in_a_value(literal: str, code: str) -> None:
    raw = json.dumps(_valid(code=code, unit="")).encode()
    raw = raw.replace(b'"value": 80', b'"value": ' + literal.encode())
    out = door_contract(raw, 1)
    if literal in ("NaN", "Infinity", "-Infinity", "nan", "inf"):  # not JSON (RFC 8259)
        assert isinstance(out, Refused) and out.rejections[0].reason == "malformed_json"


@HEAVY
@given(st.integers(1, 20_000), st.sampled_from(["[", '{"a":']),
       st.sampled_from(["whole", "extra", "patient_info", "value", "observations"]))
def test_deep_nesting(depth: int, opener: str, where: str) -> None:
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    if where == "whole":
        raw = nested
    else:
        rec = json.dumps(_valid())
        raw = {
            "extra": rec[:-1] + f', "extra": {nested}}}',
            "patient_info": rec[:-1] + f', "patient_info": {nested}}}',
            "value": rec.replace('"value": 80', f'"value": {nested}'),
            "observations": rec.replace('"observations": [', f'"observations": [{nested}, '),
        }[where]
    door_contract(raw.encode())


@HEAVY
@given(st.sampled_from(["patient", "event_id", "unit", "bed", "source", "code", "unit_of_obs",
                        "method", "extra"]),
       st.sampled_from([63, 64, 65, 10_000, 1_000_000]), st.characters(exclude_categories=("Cs",)))
def test_huge_strings(field: str, size: int, char: str) -> None:
    rec = _valid()
    text = char * size
    if field == "code":
        rec["observations"][0]["code"] = text
    elif field == "unit_of_obs":
        rec["observations"][0]["unit"] = text
    elif field == "method":
        rec["observations"][0]["method"] = text
    else:
        rec[field] = text
    door_contract(json.dumps(rec, ensure_ascii=False).encode(), 1)


@HEAVY
@given(st.sampled_from([255, 256, 257, 1_000, 20_000]), st.booleans(),
       st.sampled_from(["observations", "extra", "patient_info"]))
def test_huge_arrays_and_duplicate_floods(n: int, same: bool, where: str) -> None:
    """256 observations is the most one record may carry; a flood beyond that is refused."""
    obs = [{"code": "HR", "value": 80 if same else 40 + i % 200, "unit": "/min"}
           for i in range(n)]
    if where == "observations":
        rec = _valid(observations=obs)
        out = door_contract(json.dumps(rec).encode(), n)
        assert isinstance(out, Accepted) is (n <= 256)
        if isinstance(out, Accepted):
            assert len(out.observations) == n  # duplicates within a record are all kept
    else:
        rec = _valid(**{where: obs if where == "extra" else {"age_years": obs}})
        door_contract(json.dumps(rec).encode(), 1)


STRING_FIELDS = ["patient", "event_id", "unit", "bed", "source", "code", "obs_unit", "method",
                 "sex", "event_time"]


@FUZZ
@given(st.sampled_from(STRING_FIELDS), TEXT, st.booleans())
def test_unicode_in_every_string_field(field: str, text: str, ascii_escaped: bool) -> None:
    rec = _valid()
    if field in ("code", "method"):
        rec["observations"][0][field] = text
    elif field == "obs_unit":
        rec["observations"][0]["unit"] = text
    elif field == "sex":
        rec["patient_info"] = {"sex": text}
    else:
        rec[field] = text
    out = door_contract(json.dumps(rec, ensure_ascii=ascii_escaped).encode(), 1)
    if isinstance(out, Accepted) and field in ("event_id", "unit", "bed", "source"):
        assert getattr(out.record, field) == text  # carried through unchanged


@FUZZ
@given(times(), st.one_of(st.none(), patient_infos()))
def test_timestamps_far_past_future_and_without_zone(when: object, info: object) -> None:
    rec = _valid(event_time=when)
    if info is not None:
        rec["patient_info"] = info
    out = door_contract(json.dumps(rec, allow_nan=True).encode(), 1)
    if isinstance(when, str) and isinstance(out, Accepted):
        assert out.event_ms >= TIME_FLOOR_MS


@FUZZ
@given(st.lists(records() | st.binary(max_size=256).map(lambda b: (b, None))
                | st.just((None, None)), max_size=25))
def test_batch_counters_add_up(batch: list[tuple[bytes | None, int | None]]) -> None:
    """What the worker counts per batch: each input once, each rejection once, each
    observation of a usable record either used or refused."""
    outcomes: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    used = dropped = carried = 0
    for payload, n_obs in batch:
        out = door_contract(payload, n_obs)
        outcomes["accepted" if isinstance(out, Accepted) else "rejected"] += 1
        by_reason.update(r.reason for r in out.rejections)
        if isinstance(out, Accepted):
            used += len(out.observations)
            dropped += len(out.rejections)
            carried += len(out.record.observations)
    assert outcomes["accepted"] + outcomes["rejected"] == len(batch)
    assert used + dropped == carried
    assert sum(by_reason.values()) >= outcomes["rejected"]  # each refusal names >= 1 reason


@FUZZ
@given(st.binary(max_size=512) | records().map(lambda r: r[0]) | st.just(None),
       st.sampled_from([LABEL_DECODER, ACK_DECODER, VITALS_DECODER]))
def test_the_wire_decoder_never_raises(raw: bytes | None, decoder: msgspec.json.Decoder) -> None:
    """The labels and acks agents read the same untrusted bytes through the same decoder."""
    out = decode_wire(decoder, raw)
    if isinstance(out, Rejection):
        assert out.reason in ("malformed_json", "schema") and out.detail
        event(f"decoder: {out.reason}")
    else:
        assert isinstance(out, msgspec.Struct)
        event("decoder: decoded")


# --- the generators reach every reason --------------------------------------------------------

@pytest.mark.parametrize("reason", ["accepted"] + sorted(DOOR_REASONS - {"not_finite"}))
def test_the_record_generator_reaches(reason: str) -> None:
    """A fuzzer that only produced schema errors would prove nothing: each outcome and
    reason is reachable from :func:`records` within the budget.

    ``not_finite`` is not reachable from bytes at all: JSON has no NaN or infinity, msgspec
    refuses the ``NaN``/``Infinity`` literals (``malformed_json``) and out-of-range numbers
    (``schema``); only in-process callers of ``check`` can pass one.
    """
    def hits(rec: tuple[bytes, int | None]) -> bool:
        out = validate(rec[0], NOW_MS, SKEW_MS)
        if reason == "accepted":
            return isinstance(out, Accepted) and not out.rejections
        return any(r.reason == reason for r in out.rejections)

    # generate only: the first hit is the answer, shrinking it would only cost time
    find(records(), hits, settings=settings(FUZZ, max_examples=2_000, phases=[Phase.generate]))
