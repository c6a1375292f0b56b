"""Property tests: random and adversarial input never escapes as an exception, and every
input ends as records and/or dead letters with reasons, with an answer for the sender."""

from __future__ import annotations

import asyncio
import json
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.gateways.fakes import FakeProducer
from vigil.gateways.fhir import map_observation
from vigil.gateways.hl7_service import Hl7Service
from vigil.gateways.intake import Door
from vigil.gateways.mllp import Frame, Framer, Refusal
from vigil.gateways.samples import oru
from vigil.settings import VigilSettings
from vigil.wire.records import DLQ_DECODER, VITALS_DECODER

DOOR = Door("k", "mrn", 300_000)
SETTINGS = VigilSettings(pseudonym_key="k", hl7_timezone="UTC")
BASE = oru().decode()
HL7_ALPHABET = st.sampled_from(list("|^~\\&\r\nMSHPIDOBXR01AENF0123456789.+-") + ["\x0b",
                                                                              "\x1c", "é"])


def _mutations() -> st.SearchStrategy[bytes]:
    """A real message with segments dropped, duplicated, cut, or characters replaced."""
    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        segs = BASE.split("\r")
        for _ in range(draw(st.integers(0, 6))):
            i = draw(st.integers(0, len(segs) - 1))
            op = draw(st.sampled_from(["drop", "dup", "cut", "junk", "field"]))
            if op == "drop":
                segs.pop(i)
            elif op == "dup":
                segs.insert(i, segs[i])
            elif op == "cut":
                segs[i] = segs[i][:draw(st.integers(0, len(segs[i])))]
            elif op == "junk":
                segs[i] = segs[i] + draw(st.text(HL7_ALPHABET, max_size=30))
            else:
                parts = segs[i].split("|")
                parts[draw(st.integers(0, len(parts) - 1))] = draw(st.text(HL7_ALPHABET,
                                                                           max_size=12))
                segs[i] = "|".join(parts)
            if not segs:
                segs = [""]
        return "\r".join(segs).encode()
    return mutate()


def _check_answer(raw: bytes) -> None:
    prod = FakeProducer()
    svc = Hl7Service(SETTINGS, prod)  # type: ignore[arg-type]
    ack = asyncio.run(svc.handle(raw))
    msa = [s for s in ack.split(b"\r") if s.startswith(b"MSA|")]
    assert len(msa) == 1
    code = msa[0].split(b"|")[1]
    assert code in (b"AA", b"AE", b"AR")
    vitals = [VITALS_DECODER.decode(v) for v in prod.topic(SETTINGS.topic_vitals)]
    dead = [DLQ_DECODER.decode(v) for v in prod.topic(SETTINGS.topic_dlq)]
    if code == b"AR":
        assert not vitals and len(dead) == 1 and dead[0].rejections
    if code == b"AE":
        assert dead and all(d.reason for d in dead)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(_mutations())
def test_mutated_pcd01_messages(raw: bytes) -> None:
    _check_answer(raw)


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.binary(max_size=400) | st.text(HL7_ALPHABET, max_size=300).map(str.encode))
def test_random_bytes(raw: bytes) -> None:
    _check_answer(raw)


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=20))
def test_framer_never_buffers_beyond_its_limit(chunks: list[bytes]) -> None:
    f = Framer(256)
    for c in chunks:
        for e in f.feed(c):
            assert isinstance(e, Frame | Refusal)
        assert len(f.buf) <= 256


JSONS = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers()
                     | st.text(max_size=12),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                          c, max_size=4),
                     max_leaves=20)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.one_of(JSONS, st.fixed_dictionaries({
    "resourceType": st.just("Observation"),
    "status": st.sampled_from(["final", "cancelled", "x", ""]),
    "code": st.fixed_dictionaries({"coding": st.lists(st.fixed_dictionaries({
        "system": st.sampled_from(["http://loinc.org", "urn:iso:std:iso:11073:10101", "x"]),
        "code": st.sampled_from(["8867-4", "8480-6", "150456", "zzz", ""])}), max_size=2)}),
    "subject": st.sampled_from([{"reference": "Patient/1"}, {"identifier": {"value": "7"}},
                                {}, {"reference": "urn:uuid:1"}]),
    "effectiveDateTime": st.sampled_from(["2026-03-01T10:00:00Z", "2026-03-01", "2999-01-01T"
                                          "00:00:00Z", "1970-01-01T00:00:00Z"]),
    "valueQuantity": st.fixed_dictionaries({"value": st.floats(-1e9, 1e9) | st.integers(),
                                            "code": st.sampled_from(["/min", "%", "kPa", ""])}),
})))
def test_fhir_mapping_never_raises(data: object) -> None:
    m = map_observation(json.loads(json.dumps(data, default=str)) if data is not None else data,
                        DOOR)
    assert m.record is not None or m.fatal is not None
    if m.record is None:
        assert m.status in (400, 422)
    json.loads(m.redacted)


def test_zone_is_used_by_the_service() -> None:
    assert Hl7Service(SETTINGS, FakeProducer()).zone == ZoneInfo("UTC")  # type: ignore[arg-type]


_IDS = st.sampled_from(["a", "b", "c", "d"])
_REF = st.one_of(
    _IDS.map(lambda i: {"reference": f"#{i}"}),
    st.fixed_dictionaries({}, optional={"display": st.text(HL7_ALPHABET | st.just("/"),
                                                             max_size=12),
                                        "identifier": st.fixed_dictionaries(
                                            {"value": st.text(max_size=8) | st.just("U/1")})}),
)
_CONTAINED = st.one_of(
    st.fixed_dictionaries({"resourceType": st.just("Location"), "id": _IDS},
                          optional={"name": st.text(max_size=8), "partOf": _REF,
                                    "physicalType": st.sampled_from(["bd", "ro", "wa", "lvl"])
                                    .map(lambda c: {"coding": [{"code": c}]})}),
    st.fixed_dictionaries({"resourceType": st.just("Encounter"), "id": _IDS,
                           "status": st.just("in-progress"), "class": st.just({"code": "IMP"}),
                           "location": st.lists(st.fixed_dictionaries(
                               {"location": _REF}, optional={"status": st.sampled_from(
                                   ["active", "completed", "planned"])}), max_size=3)}),
    st.fixed_dictionaries({"resourceType": st.just("Device"), "id": _IDS},
                          optional={"location": _REF}),
)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(_CONTAINED, max_size=5, unique_by=lambda r: r["id"]),
       st.none() | _REF, st.none() | _REF, st.none() | _REF)
def test_fhir_locations_never_raise(contained: list[dict], encounter: dict | None,
                                    device: dict | None, event_location: dict | None) -> None:
    obs: dict = {"resourceType": "Observation", "status": "final", "contained": contained,
                 "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                 "subject": {"reference": "Patient/1"},
                 "effectiveDateTime": "2026-03-01T10:00:00Z",
                 "valueQuantity": {"value": 80, "code": "/min"}}
    if encounter is not None:
        obs["encounter"] = encounter
    if device is not None:
        obs["device"] = device
    if event_location is not None:
        obs["extension"] = [{"url": "http://hl7.org/fhir/StructureDefinition/event-location",
                             "valueReference": event_location}]
    m = map_observation(obs, DOOR)
    if m.record is not None:
        assert m.record.unit is None or 0 < len(m.record.unit) <= 64
        assert m.record.bed is None or 0 < len(m.record.bed) <= 64
    else:  # an invalid combination (e.g. an empty reference) is a 400, never an exception
        assert m.status in (400, 422) and m.fatal is not None
