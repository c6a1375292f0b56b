"""The FHIR endpoint: Observation, blood-pressure panel, batch Bundles, errors, metadata."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome

from tests.gateways.fakes import FakeProducer
from vigil.gateways.fhir import make_app, map_observation
from vigil.gateways.intake import Door
from vigil.gateways.metrics import GatewayMetrics
from vigil.settings import VigilSettings
from vigil.stream.pseudonym import pseudonymize
from vigil.wire.records import DLQ_DECODER, VITALS_DECODER

VS = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                   "code": "vital-signs"}]}]
HR: dict[str, Any] = {
    "resourceType": "Observation", "status": "final", "category": VS,
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    "subject": {"identifier": {"system": "urn:oid:1.2.3", "value": "MRN-4711"},
                "display": "Erika Mustermann"},
    "effectiveDateTime": "2026-03-01T11:59:00+01:00",
    "valueQuantity": {"value": 82, "unit": "beats/minute", "system": "http://unitsofmeasure.org",
                      "code": "/min"},
    "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/event-location",
                   "valueReference": {"display": "MICU/12"}}],
}
BP: dict[str, Any] = {
    "resourceType": "Observation", "status": "final", "category": VS,
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": "Patient/example"},
    "effectiveDateTime": "2026-03-01T12:00:00Z",
    "component": [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": 109, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
         "valueQuantity": {"value": 44, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
    ],
}


def run(fn) -> Any:  # type: ignore[no-untyped-def]
    async def main() -> Any:
        s = VigilSettings(pseudonym_key="k")
        prod = FakeProducer()
        metrics = GatewayMetrics()
        async with TestClient(TestServer(make_app(s, prod, metrics))) as client:  # type: ignore[arg-type]
            return await fn(client, prod, s, metrics)
    return asyncio.run(main())


def test_single_observation_is_created_once_kafka_holds_it() -> None:
    async def case(client, prod, s, _m):  # type: ignore[no-untyped-def]
        r = await client.post("/fhir/Observation", json=HR,
                              headers={"Content-Type": "application/fhir+json"})
        assert r.status == 201 and r.headers["Location"].startswith("Observation/")
        body = await r.json()
        assert body["id"] and r.headers["Location"] == f"Observation/{body['id']}/_history/1"
        [rec] = [VITALS_DECODER.decode(v) for v in prod.topic(s.topic_vitals)]
        assert rec.patient == pseudonymize("MRN-4711", "k", "mrn")
        assert [(o.code, o.value, o.unit) for o in rec.observations] == [("HR", 82.0, "/min")]
        assert (rec.unit, rec.bed, rec.source) == ("MICU", "12", "fhir")
        assert rec.event_time.isoformat() == "2026-03-01T11:59:00+01:00"
    run(case)


def test_blood_pressure_panel_components() -> None:
    async def case(client, prod, s, _m):  # type: ignore[no-untyped-def]
        r = await client.post("/fhir/Observation", json=BP)
        assert r.status == 201
        [rec] = [VITALS_DECODER.decode(v) for v in prod.topic(s.topic_vitals)]
        assert {(o.code, o.value) for o in rec.observations} == {("SBP", 109.0), ("DBP", 44.0)}
        assert rec.patient == pseudonymize("Patient/example", "k", "fhir:Patient")
    run(case)


def test_batch_with_one_bad_entry() -> None:
    bad = copy.deepcopy(HR)
    bad["valueQuantity"]["value"] = 900
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": HR, "request": {"method": "POST", "url": "Observation"}},
        {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
        {"resource": BP, "request": {"method": "POST", "url": "Observation"}},
    ]}

    async def case(client, prod, s, metrics):  # type: ignore[no-untyped-def]
        r = await client.post("/fhir", json=bundle)
        assert r.status == 200
        body = await r.json()
        Bundle.model_validate(body)
        statuses = [e["response"]["status"] for e in body["entry"]]
        assert statuses == ["201 Created", "422 Unprocessable Entity", "201 Created"]
        oo = body["entry"][1]["response"]["outcome"]
        OperationOutcome.model_validate(oo)
        assert "implausible" in oo["issue"][0]["diagnostics"]
        assert len(prod.topic(s.topic_vitals)) == 2
        [dl] = [DLQ_DECODER.decode(v) for v in prod.topic(s.topic_dlq)]
        assert dl.reason == "implausible" and "Mustermann" not in dl.payload
        assert "MRN-4711" not in dl.payload
        assert metrics.messages.labels("fhir", "AE")._value.get() == 1
    run(case)


def test_transaction_is_all_or_nothing() -> None:
    bad = copy.deepcopy(BP)
    bad["effectiveDateTime"] = "2026-03-01"
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": HR}, {"resource": bad}]}

    async def case(client, prod, s, _m):  # type: ignore[no-untyped-def]
        r = await client.post("/fhir", json=bundle)
        assert r.status == 422
        OperationOutcome.model_validate(await r.json())
        assert prod.topic(s.topic_vitals) == []
    run(case)


def test_invalid_resources_get_an_operation_outcome() -> None:
    async def case(client, prod, s, _m):  # type: ignore[no-untyped-def]
        for body, status in ((b"not json", 400), (b'{"resourceType": "Observation"}', 400),
                             (b'{"resourceType": "Patient", "id": "x"}', 422),
                             (b'[1, 2]', 400)):
            r = await client.post("/fhir/Observation", data=body,
                                  headers={"Content-Type": "application/fhir+json"})
            assert r.status == status, body
            oo = await r.json()
            OperationOutcome.model_validate(oo)
            assert oo["issue"][0]["severity"] == "error"
        no_zone = {**HR, "effectiveDateTime": "2026-03-01T11:59:00"}
        r = await client.post("/fhir/Observation", json=no_zone)
        assert r.status == 400  # FHIR dateTime with a time must carry its offset
        unknown = {**HR, "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}}
        r = await client.post("/fhir/Observation", json=unknown)
        assert r.status == 422 and "unknown_code" in (await r.json())["issue"][0]["diagnostics"]
        assert prod.topic(s.topic_vitals) == []
    run(case)


def test_metadata_and_metrics() -> None:
    async def case(client, prod, s, _m):  # type: ignore[no-untyped-def]
        r = await client.get("/fhir/metadata")
        assert r.status == 200
        cs = CapabilityStatement.model_validate(await r.json())
        assert cs.rest[0].resource[0].type == "Observation"
        await client.post("/fhir/Observation", json=HR)
        text = await (await client.get("/metrics")).text()
        assert 'vigil_gateway_messages_total{gateway="fhir",outcome="AA"} 1.0' in text
        assert "MRN-4711" not in text and "Mustermann" not in text
    run(case)


def test_broker_down_is_503_and_never_201() -> None:
    async def case(client, prod, s, _m):  # type: ignore[no-untyped-def]
        prod.down = True
        r = await client.post("/fhir/Observation", json=HR)
        assert r.status == 503 and r.headers["Retry-After"]
        OperationOutcome.model_validate(await r.json())
        prod.down = False
        assert (await client.post("/fhir/Observation", json=HR)).status == 201
    run(case)


PHYS = "http://terminology.hl7.org/CodeSystem/location-physical-type"


def _loc(id_: str, name: str, kind: str | None = None, part_of: str | None = None,
         **extra: Any) -> dict[str, Any]:
    loc: dict[str, Any] = {"resourceType": "Location", "id": id_, "name": name, **extra}
    if kind:
        loc["physicalType"] = {"coding": [{"system": PHYS, "code": kind}]}
    if part_of:
        loc["partOf"] = {"reference": f"#{part_of}"}
    return loc


def _without_extension(**changes: Any) -> dict[str, Any]:
    obs = {k: v for k, v in copy.deepcopy(HR).items() if k != "extension"}
    obs.update(changes)
    return obs


BED_ROOM_WARD = [_loc("bed", "B", "bd", "room"), _loc("room", "12", "ro", "ward"),
                 _loc("ward", "MICU", "wa", "floor"), _loc("floor", "Level 3", "lvl")]
LOCATION_CASES: dict[str, tuple[dict[str, Any], tuple[str | None, str | None]]] = {
    "contained encounter, bed in room in ward": (_without_extension(
        contained=[*BED_ROOM_WARD, {
            "resourceType": "Encounter", "id": "enc", "status": "in-progress",
            "class": {"code": "IMP"},
            "location": [{"location": {"reference": "#ward"}, "status": "completed"},
                         {"location": {"reference": "#bed"}, "status": "active"}]}],
        encounter={"reference": "#enc"}), ("MICU", "12-B")),
    "contained encounter without statuses: the last open entry": (_without_extension(
        contained=[{"resourceType": "Encounter", "id": "enc", "status": "in-progress",
                    "class": {"code": "IMP"}, "location": [
                        {"location": {"display": "ER/1"},
                         "period": {"end": "2026-03-01T08:00:00Z"}},
                        {"location": {"display": "SICU/4"}},
                        {"location": {"display": "CCU/9"}, "status": "planned"}]}],
        encounter={"reference": "#enc"}), ("SICU", "4")),
    "encounter reference with a display": (_without_extension(
        encounter={"reference": "Encounter/77", "display": "SICU/3"},
        device={"display": "IntelliVue MX800"}), ("SICU", "3")),
    "a device's name is not a place": (_without_extension(
        encounter={"reference": "Encounter/77", "display": "ICU stay"},
        device={"display": "IntelliVue MX800"}), (None, None)),
    "contained device, its location by identifier": (_without_extension(
        contained=[{"resourceType": "Device", "id": "mon",
                    "location": {"identifier": {"system": "urn:oid:1.2.3", "value": "NICU/2"}}}],
        device={"reference": "#mon"}), ("NICU", "2")),
    "contained device metric of a device at a contained bed": (_without_extension(
        contained=[_loc("bed", "7", part_of="unit"), _loc("unit", "CCU"),
                   {"resourceType": "Device", "id": "mon", "location": {"reference": "#bed"}},
                   {"resourceType": "DeviceMetric", "id": "hr", "type": {"text": "HR"},
                    "category": "measurement", "source": {"reference": "#mon"}}],
        device={"reference": "#hr"}), ("CCU", "7")),
    "the extension comes first": (dict(copy.deepcopy(HR), encounter={"display": "SICU/3"}),
                                  ("MICU", "12")),
    "a partOf loop ends": (_without_extension(
        contained=[_loc("a", "A", "bd", "b"), _loc("b", "B", "wa", "a"),
                   {"resourceType": "Device", "id": "mon", "location": {"reference": "#a"}}],
        device={"reference": "#mon"}), ("B", "A")),
}


@pytest.mark.parametrize("case", list(LOCATION_CASES))
def test_unit_and_bed_from_encounter_and_device(case: str) -> None:
    obs, want = LOCATION_CASES[case]
    m = map_observation(json.loads(json.dumps(obs)), Door("k", "mrn", 300_000))
    assert m.record is not None, m.fatal
    assert (m.record.unit, m.record.bed) == want


def test_contained_resources_stay_out_of_the_dead_letter() -> None:
    obs = copy.deepcopy(LOCATION_CASES["contained encounter, bed in room in ward"][0])
    obs["contained"].append({"resourceType": "Patient", "id": "p", "name": [{"family": "Doe"}]})
    obs["valueQuantity"]["value"] = 900
    m = map_observation(obs, Door("k", "mrn", 300_000))
    assert m.record is None and "Doe" not in m.redacted and "contained" not in m.redacted
