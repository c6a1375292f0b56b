"""FHIR R4 vital-signs Observations over HTTP (aiohttp): ``vigil fhir-listen``.

- ``POST /fhir/Observation``: one Observation; ``201 Created`` with ``Location`` once the
  broker holds its record, ``400`` (not JSON, not a valid Observation), ``422`` (valid but not
  usable: unknown code, implausible value, no subject, no time zone ...) or ``503`` (the
  broker did not acknowledge in time: resend), each with an ``OperationOutcome``.
- ``POST /fhir``: a ``Bundle`` of type ``batch`` (each entry answered on its own, in a
  ``batch-response``) or ``transaction`` (all entries or none).
- ``GET /fhir/metadata``: a minimal ``CapabilityStatement``.
- ``GET /metrics``, ``GET /health``.

Resources are validated with ``fhir.resources`` (R4B models: the Observation resource is the
same in R4 4.0.1 and R4B 4.3.0) and mapped per the FHIR vital-signs profile
(http://hl7.org/fhir/R4/observation-vitalsigns.html): ``code`` (LOINC, or MDC with system
``urn:iso:std:iso:11073:10101``), ``subject`` (an identifier, or a ``Patient/<id>``
reference) to the pseudonym, ``effective[x]`` with its offset, ``valueQuantity`` in UCUM, and
``component`` values (blood pressure panel 85354-9: 8480-6 systolic, 8462-4 diastolic). Unit
and bed come from the ``event-location`` extension, the encounter's or the device's location
(contained resources, or a reference's display; see :func:`_location`). Each value passes
the same door as the JSON and HL7 paths.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from vigil.gateways import mdc
from vigil.gateways.intake import Door, Issue, dead_letter, short_id
from vigil.gateways.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from vigil.gateways.producer import GatewayProducer, Unavailable
from vigil.settings import VigilSettings
from vigil.wire.records import Observation as VigilObservation
from vigil.wire.records import VitalsRecord, encode

__all__ = ["make_app", "map_observation", "capability_statement", "Mapped", "redact_resource"]

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
USED_STATUS = {"final", "amended", "corrected", "preliminary"}
EVENT_LOCATION = "http://hl7.org/fhir/StructureDefinition/event-location"
PATIENT_NAMESPACE_REF = "fhir:Patient"
SERVICE: web.AppKey[FhirService] = web.AppKey("vigil.fhir")


@dataclass(slots=True)
class Mapped:
    """One Observation resource after mapping: its record (if any) and every issue."""

    record: VitalsRecord | None = None
    issues: list[Issue] = field(default_factory=list)
    fatal: Issue | None = None  # the resource is not used at all
    status: int = 201  # the HTTP status for this resource
    resource_id: str = ""
    redacted: str = ""

    @property
    def errors(self) -> list[Issue]:
        return [self.fatal] if self.fatal else [i for i in self.issues if i.severity == "E"]


def outcome(issues: list[Issue], default: str = "informational") -> dict[str, Any]:
    """An OperationOutcome with one issue per refusal (severity error / warning)."""
    sev = {"E": "error", "W": "warning", "I": "information"}
    kind = {"unparsable": "structure", "invalid": "invalid", "unknown_code": "code-invalid",
            "unknown_unit": "code-invalid", "implausible": "value", "not_finite": "value",
            "future": "business-rule", "implausible_time": "business-rule",
            "broker_unavailable": "transient", "not_supported": "not-supported",
            "too_large": "too-long"}
    items = [{"severity": sev[i.severity], "code": kind.get(i.reason, "processing"),
              "diagnostics": f"{i.reason}: {i.detail}",
              **({"expression": [i.segment]} if i.segment else {})} for i in issues]
    if not items:
        items = [{"severity": "information", "code": default, "diagnostics": "accepted"}]
    return {"resourceType": "OperationOutcome", "issue": items}


def capability_statement(base_url: str = "") -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "Vigil FHIR gateway"},
        "implementation": {"description": "Vital-signs Observations into vigil.vitals",
                           **({"url": base_url} if base_url else {})},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "resource": [{
                "type": "Observation",
                "supportedProfile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"],
                "interaction": [{"code": "create"}],
            }],
            "interaction": [{"code": "batch"}, {"code": "transaction"}],
        }],
    }


def _codings(concept: Any) -> list[tuple[str, str, str]]:
    if concept is None:
        return []
    out = []
    for c in concept.coding or []:
        out.append((str(c.code or ""), str(c.display or ""), str(c.system or "")))
    return out


def _is_vital_signs(obs: Any) -> bool:
    return any(code == "vital-signs" for cat in (obs.category or [])
               for code, _, _ in _codings(cat))


def _lookup(concept: Any, vital_signs: bool) -> mdc.CodeMap | None:
    codings = _codings(concept)
    if vital_signs and any(code == "2708-6" for code, _, _ in codings) and not any(
            code == "59408-5" for code, _, _ in codings):
        # the FHIR oxygen-saturation vital-signs profile codes SpO2 as 2708-6
        return mdc.CodeMap("SpO2", None, "Oxygen saturation (vital-signs profile)")
    return mdc.lookup(codings)


def _quantity(q: Any, hit: mdc.CodeMap, where: str) -> VigilObservation | Issue:
    if q is None or q.value is None:
        return Issue("schema", f"{where}: no valueQuantity.value", "E", 101, where, code=hit.code)
    try:
        value = float(q.value)
    except (TypeError, ValueError, OverflowError):
        return Issue("not_numeric", f"{where}: value is not a number", "E", 102, where)
    system = str(q.system or "")
    unit = str(q.code or q.unit or "")
    if system and mdc.is_mdc_system(system):
        unit = mdc.unit_of(unit, str(q.unit or ""), "MDC")
    return VigilObservation(hit.code, value, unit[:32], hit.method)


def _subject(obs: Any, door: Door) -> str | None:
    subj = obs.subject
    if subj is None:
        return None
    ident = subj.identifier
    if ident is not None and ident.value:
        return door.patient(str(ident.value))
    ref = str(subj.reference or "")
    if ref.startswith("Patient/") and len(ref) > len("Patient/"):
        return door.patient(ref.split("/_history")[0], PATIENT_NAMESPACE_REF)
    return None


# --- unit and bed -----------------------------------------------------------------------------
#
# A vital sign is scored without a bed, but the board and the alert say where the patient
# is, so the location is taken from wherever a sender put it, first found wins:
#
# 1. the core extension ``event-location`` (``valueReference``, a Location);
# 2. ``Observation.encounter``: a contained Encounter's current ``location`` (the entry with
#    status ``active``, else the last one with neither a status nor an ended period; planned,
#    reserved and completed entries are never used), each a Location; a plain reference
#    only by its ``display`` in the form ``UNIT/BED`` (with a ``/``);
# 3. ``Observation.device``: a contained Device's ``location`` (a contained DeviceMetric via
#    its ``source`` or ``parent`` Device), a Location; a plain reference only by its
#    ``display`` in the form ``UNIT/BED``.
#
# A Location is read from a contained Location (``#id``): its name (else its first identifier
# value) and those of its ``partOf`` chain (contained, or a reference's display), placed by
# ``physicalType`` (location-physical-type ``bd`` bed, ``ro`` room, ``wa`` ward = the unit):
# room and bed are joined ``ROOM-BED`` as from HL7 PV1-3. Without physical types the Location
# is the bed and its parent the unit; a lone Location's name is read as ``UNIT/BED``. A
# Location that is not contained is read from its reference's ``display``, else its
# ``identifier.value``: ``UNIT/BED`` (unit before the first ``/``, bed the rest), or a unit
# alone. Nothing is fetched: a reference Vigil cannot read here gives no location.

LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
_MAX_PART_OF = 8  # partOf hops followed (a bed, its room, ward, floor, building, site ...)
_ENDED = {"completed", "planned", "reserved"}
Place = tuple[str | None, str | None]  # (unit, bed)


def _contained(obs: Any) -> dict[str, Any]:
    return {f"#{c.id}": c for c in obs.contained or [] if getattr(c, "id", None)}


def _target(ref: Any, contained: dict[str, Any], kind: str) -> Any | None:
    """The contained resource of type ``kind`` that ``ref`` points at (``#id``), if any."""
    r = str(getattr(ref, "reference", None) or "")
    res = contained.get(r) if r.startswith("#") else None
    return res if res is not None and res.get_resource_type() == kind else None


def _unit_bed(text: str) -> Place:
    unit, _, bed = text.partition("/")
    return unit.strip() or None, bed.strip() or None


def _carried(ref: Any) -> Place | None:
    """An Encounter or Device reference that says where in its display (``UNIT/BED``)."""
    display = str(getattr(ref, "display", None) or "")
    if "/" not in display:
        return None  # a device's or a visit's name, not a place
    unit, bed = _unit_bed(display)
    return (unit, bed) if unit or bed else None


def _physical_type(loc: Any) -> str:
    for code, _display, system in _codings(getattr(loc, "physicalType", None)):
        if not system or system == LOCATION_PHYSICAL_TYPE:
            return code
    return ""


def _from_location_ref(ref: Any, contained: dict[str, Any]) -> Place | None:
    loc = _target(ref, contained, "Location")
    if loc is not None:
        return _from_location(loc, contained)
    ident = getattr(ref, "identifier", None)
    for text in (getattr(ref, "display", None), getattr(ident, "value", None)):
        if text and str(text).strip():
            unit, bed = _unit_bed(str(text))
            if unit or bed:
                return unit, bed
    return None


def _from_location(loc: Any, contained: dict[str, Any]) -> Place | None:
    """A contained Location and its ``partOf`` chain as (unit, bed)."""
    chain: list[tuple[str, str]] = []  # (physical type, name), the Location first
    node: Any = loc
    seen: set[int] = set()
    while node is not None and id(node) not in seen and len(chain) <= _MAX_PART_OF:
        seen.add(id(node))
        name = str(node.name or "").strip() or next(
            (str(i.value).strip() for i in node.identifier or [] if i.value), "")
        chain.append((_physical_type(node), name))
        parent = node.partOf
        node = _target(parent, contained, "Location")
        if node is None and parent is not None and str(parent.display or "").strip():
            chain.append(("", str(parent.display).strip()))
    named = [(t, n) for t, n in chain if n]
    if not named:
        return None
    if not any(t for t, _ in named):  # no physical types: the Location is the bed
        if len(named) == 1:
            unit, bed = _unit_bed(named[0][1])
            return (unit, bed) if unit or bed else None
        return named[1][1], named[0][1]
    bed = next((n for t, n in named if t == "bd"), None)
    room = next((n for t, n in named if t == "ro"), None)
    unit = next((n for t, n in named if t == "wa"), None)
    if unit is None:  # no ward: the first place above the room and bed
        unit = next((n for t, n in named if t not in ("bd", "ro")), None)
    spot = f"{room}-{bed}" if room and bed else bed or room
    return (unit, spot) if unit or spot else None


def _encounter_place(obs: Any, contained: dict[str, Any]) -> Place | None:
    enc = _target(obs.encounter, contained, "Encounter")
    if enc is None:
        return _carried(obs.encounter)
    entries = list(enc.location or [])
    current = [e for e in entries if e.status == "active"] or [
        e for e in entries if e.status is None and (e.period is None or e.period.end is None)][-1:]
    for e in current:
        place = _from_location_ref(e.location, contained)
        if place is not None:
            return place
    return None


def _device_place(obs: Any, contained: dict[str, Any]) -> Place | None:
    dev = _target(obs.device, contained, "Device")
    if dev is None:
        metric = _target(obs.device, contained, "DeviceMetric")
        if metric is None:
            return _carried(obs.device)
        dev = _target(metric.source, contained, "Device") or _target(metric.parent, contained,
                                                                      "Device")
        if dev is None:
            return None
    return _from_location_ref(dev.location, contained) if dev.location is not None else None


def _location(obs: Any) -> Place:
    """(unit, bed) from the event-location extension, the encounter or the device (above)."""
    contained = _contained(obs)
    place: Place | None = None
    for ext in obs.extension or []:
        if ext.url == EVENT_LOCATION and ext.valueReference is not None:
            place = _from_location_ref(ext.valueReference, contained)
            break
    if place is None and obs.encounter is not None:
        place = _encounter_place(obs, contained)
    if place is None and obs.device is not None:
        place = _device_place(obs, contained)
    if place is None:
        return None, None
    unit, bed = place
    return (unit or "")[:64] or None, (bed or "")[:64] or None


def _effective(obs: Any) -> datetime | Issue:
    when: Any = obs.effectiveDateTime or obs.effectiveInstant
    if when is None and obs.effectivePeriod is not None:
        when = obs.effectivePeriod.start or obs.effectivePeriod.end
    if when is None:
        return Issue("schema", "effective[x] is missing: a vital sign needs its time", "E", 101,
                     "Observation.effective")
    if not isinstance(when, datetime):
        return Issue("bad_time", f"effective[x] {str(when)[:30]} is a date, not a time", "E",
                     102, "Observation.effective")
    if when.tzinfo is None:
        return Issue("bad_time", "effective[x] has no time zone", "E", 102,
                     "Observation.effective")
    return when


def redact_resource(data: Any) -> str:
    """The resource without anything that could name the patient (for the dead letter)."""
    if not isinstance(data, dict):
        return json.dumps({"not_an_object": type(data).__name__})
    keep = ("resourceType", "status", "category", "code", "effectiveDateTime",
            "effectiveInstant", "effectivePeriod", "valueQuantity", "dataAbsentReason",
            "component", "interpretation", "method", "bodySite")
    out = {k: data[k] for k in keep if k in data}
    out["subject"] = "[pseudonymised]" if "subject" in data else "[missing]"
    return json.dumps(out, default=str)[:200_000]


def map_observation(data: Any, door: Door, now: datetime | None = None) -> Mapped:
    """Validate one Observation resource (parsed JSON) and map it; never raises."""
    from fhir.resources.R4B.observation import Observation
    from pydantic import ValidationError

    m = Mapped(redacted=redact_resource(data))
    now = now or datetime.now(UTC)
    if not isinstance(data, dict) or data.get("resourceType") != "Observation":
        kind = data.get("resourceType") if isinstance(data, dict) else type(data).__name__
        m.fatal = Issue("not_supported", f"resourceType {str(kind)[:40]!r}: only Observation "
                        "is accepted", "E", 200)
        m.status = 422 if isinstance(data, dict) else 400
        return m
    try:
        obs = Observation.model_validate(data)
    except ValidationError as exc:
        # locations and messages only: pydantic's input_value would echo patient data
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                          for e in exc.errors()[:5])
        m.fatal = Issue("invalid", f"not a valid FHIR R4 Observation: {where}"[:400], "E", 102)
        m.status = 400
        return m
    except Exception as exc:  # noqa: BLE001 - a model bug must not cost the request
        m.fatal = Issue("invalid", f"not a valid FHIR R4 Observation ({type(exc).__name__})",
                        "E", 102)
        m.status = 400
        return m
    status = str(obs.status or "")
    if status not in USED_STATUS:
        m.fatal = Issue("result_status", f"status {status[:20]!r}: not used (Vigil uses "
                        f"{', '.join(sorted(USED_STATUS))})", "E", 0, "Observation.status")
        m.status = 422
        return m
    patient = _subject(obs, door)
    if patient is None:
        m.fatal = Issue("no_patient", "subject must be a Patient reference (Patient/<id>) or "
                        "carry an identifier", "E", 101, "Observation.subject")
        m.status = 422
        return m
    at = _effective(obs)
    if isinstance(at, Issue):
        m.fatal, m.status = at, 422
        return m
    vital = _is_vital_signs(obs)
    found: list[VigilObservation] = []
    top = _lookup(obs.code, vital)
    if obs.valueQuantity is not None:
        if top is None:
            m.issues.append(Issue("unknown_code", "Observation.code is not a code Vigil uses",
                                  "E", 103, "Observation.code"))
        else:
            q = _quantity(obs.valueQuantity, top, "Observation.valueQuantity")
            (m.issues if isinstance(q, Issue) else found).append(q)  # type: ignore[arg-type]
    for k, comp in enumerate(obs.component or []):
        where = f"Observation.component[{k}]"
        hit = _lookup(comp.code, vital)
        if comp.valueQuantity is None:
            severity = "W" if comp.dataAbsentReason is not None else "E"
            m.issues.append(Issue("schema", f"{where} has no valueQuantity", severity, 101,
                                  where))
            continue
        if hit is None:
            m.issues.append(Issue("unknown_code", f"{where}.code is not a code Vigil uses", "E",
                                  103, f"{where}.code"))
            continue
        q = _quantity(comp.valueQuantity, hit, f"{where}.valueQuantity")
        (m.issues if isinstance(q, Issue) else found).append(q)  # type: ignore[arg-type]
    now_ms = int(now.timestamp() * 1000)
    good: list[VigilObservation] = []
    for o in found:
        verdict = door.check_one(patient, at, o, now_ms)
        if verdict is None:
            good.append(o)
        else:
            m.issues.append(Issue(verdict.reason, verdict.detail, "E", 207,
                                  "Observation.value", code=o.code, value=o.value))
    if not good:
        m.fatal = m.issues[0] if m.issues else Issue(
            "schema", "no valueQuantity or component value to use", "E", 101,
            "Observation.value")
        m.status = 422
        return m
    rid = str(obs.id or "")
    ident = obs.identifier[0].value if obs.identifier else None
    basis = (f"id:{ident}" if ident else f"{patient}|{at.isoformat()}|" + "|".join(
        f"{o.code}:{o.method}:{o.value!r}:{o.unit}" for o in good))
    m.resource_id = hashlib.blake2b(basis.encode(), digest_size=10).hexdigest()
    unit, bed = _location(obs)
    m.record = VitalsRecord(patient=patient, event_time=at, observations=good,
                            event_id=short_id(rid or m.resource_id, 60), unit=unit, bed=bed,
                            source="fhir")
    return m


# --- the HTTP app ---------------------------------------------------------------------------

def _response(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.Response(status=status, body=json.dumps(body, default=str).encode(),
                        content_type=FHIR_JSON, headers=headers)


class FhirService:
    """Maps, produces and answers; the broker's acknowledgement comes before any 201."""

    def __init__(self, settings: VigilSettings, producer: GatewayProducer,
                 metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.producer = producer
        self.metrics = metrics
        self.door = Door.from_settings(settings)

    def _items(self, mapped: list[Mapped], seq0: int) -> list[tuple[str, bytes | None, bytes]]:
        s = self.settings
        items: list[tuple[str, bytes | None, bytes]] = []
        for k, m in enumerate(mapped):
            if m.record is not None:
                items.append((s.topic_vitals, m.record.patient.encode(), encode(m.record)))
            issues = [m.fatal] if m.fatal else m.issues
            if issues:
                scope = "record" if m.record is None else "observations"
                key = m.record.patient.encode() if m.record is not None else None
                dlq_id = f"fhir:{m.resource_id or seq0 + k}" + (
                    "" if scope == "record" else ":observations")
                items.append((s.topic_dlq, key, dead_letter(dlq_id, scope, issues, "fhir",
                                                            m.redacted, seq0 + k)))
        return items

    async def store(self, mapped: list[Mapped]) -> Issue | None:
        """Produce everything; an Issue (broker unavailable) when nothing may be confirmed."""
        try:
            await self.producer.send(self._items(mapped, int(time.time() * 1000)))
        except Unavailable as exc:
            self.metrics.broker_errors.labels("fhir").inc()
            return Issue("broker_unavailable", f"not stored: {exc}; retry later", "E", 207)
        for m in mapped:
            if m.record is not None:
                self.metrics.observations_mapped.labels("fhir").inc(len(m.record.observations))
                self.metrics.records.labels("fhir", "vitals").inc()
            for i in [m.fatal] if m.fatal else m.issues:
                self.metrics.observations_refused.labels("fhir", i.reason).inc()
            if m.fatal or m.issues:
                self.metrics.records.labels("fhir", "dlq").inc()
        return None

    def _count(self, outcome_code: str, started: float) -> None:
        self.metrics.messages.labels("fhir", outcome_code).inc()
        self.metrics.ack_seconds.labels("fhir").observe(time.perf_counter() - started)

    async def observation(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        data = await self._body(request)
        if isinstance(data, web.Response):
            self._count("AR", started)
            return data
        m = await asyncio.to_thread(map_observation, data, self.door)
        down = await self.store([m])
        if down is not None:
            self._count("AR", started)
            return _response(503, outcome([down]), **{"Retry-After": "5"})
        if m.record is None:
            self._count("AR", started)
            return _response(m.status, outcome(m.errors))
        self._count("AE" if m.issues else "AA", started)
        body = outcome(m.issues) if m.issues else {**data, "id": m.resource_id}
        return _response(201, body, Location=f"Observation/{m.resource_id}/_history/1")

    async def bundle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        data = await self._body(request)
        if isinstance(data, web.Response):
            self._count("AR", started)
            return data
        if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
            self._count("AR", started)
            return _response(400, outcome([Issue("not_supported", "POST /fhir takes a Bundle "
                                                 "(batch or transaction)", "E", 200)]))
        kind = data.get("type")
        entries = data.get("entry") or []
        if kind not in ("batch", "transaction") or not isinstance(entries, list):
            self._count("AR", started)
            return _response(400, outcome([Issue("not_supported", f"Bundle.type {kind!r}: "
                                                 "batch or transaction only", "E", 200)]))
        if len(entries) > 1000:
            self._count("AR", started)
            return _response(413, outcome([Issue("too_large", f"{len(entries)} entries: at "
                                                 "most 1000 per Bundle", "E", 207)]))
        mapped = await asyncio.to_thread(self._map_entries, entries)
        if kind == "transaction" and any(m.record is None for m in mapped):
            # all or nothing: dead-letter the refused entries, produce no record
            bad = [m for m in mapped if m.record is None]
            down = await self.store(bad)
            self._count("AR", started)
            if down is not None:
                return _response(503, outcome([down]), **{"Retry-After": "5"})
            issues = [Issue(i.reason, f"entry[{mapped.index(m)}]: {i.detail}", i.severity,
                            i.hl7_code, i.segment) for m in bad for i in m.errors]
            return _response(max(m.status for m in bad), outcome(issues))
        down = await self.store(mapped)
        if down is not None:
            self._count("AR", started)
            return _response(503, outcome([down]), **{"Retry-After": "5"})
        self._count("AA" if all(m.record is not None and not m.issues for m in mapped)
                    else "AE", started)
        return _response(200, {
            "resourceType": "Bundle",
            "type": f"{kind}-response",
            "entry": [self._entry_response(m) for m in mapped],
        })

    def _map_entries(self, entries: list[Any]) -> list[Mapped]:
        out = []
        for e in entries:
            req = e.get("request") if isinstance(e, dict) else None
            if isinstance(req, dict) and (str(req.get("method", "POST")).upper() != "POST" or
                                          not str(req.get("url", "Observation"))
                                          .startswith("Observation")):
                m = Mapped(fatal=Issue("not_supported", "only POST Observation entries are "
                                       "accepted", "E", 200), status=422,
                           redacted=redact_resource(e.get("resource")))
                out.append(m)
                continue
            out.append(map_observation(e.get("resource") if isinstance(e, dict) else None,
                                       self.door))
        return out

    @staticmethod
    def _entry_response(m: Mapped) -> dict[str, Any]:
        if m.record is None:
            text = {400: "400 Bad Request", 422: "422 Unprocessable Entity"}.get(
                m.status, f"{m.status}")
            return {"response": {"status": text, "outcome": outcome(m.errors)}}
        resp: dict[str, Any] = {"status": "201 Created",
                                "location": f"Observation/{m.resource_id}/_history/1"}
        if m.issues:
            resp["outcome"] = outcome(m.issues)
        return {"response": resp}

    async def _body(self, request: web.Request) -> Any:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _response(413, outcome([Issue(
                "too_large", f"request body larger than {self.settings.gateway_max_message_bytes}"
                " bytes (VIGIL_GATEWAY_MAX_MESSAGE_BYTES)", "E", 207)]))
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError):
            self.metrics.observations_refused.labels("fhir", "unparsable").inc()
            return _response(400, outcome([Issue("unparsable", "the body is not JSON", "E",
                                                 102)]))

    async def metadata(self, request: web.Request) -> web.Response:
        return _response(200, capability_statement(str(request.url.origin()) + "/fhir"))

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app(settings: VigilSettings, producer: GatewayProducer,
             metrics: GatewayMetrics | None = None) -> web.Application:
    """The aiohttp application; the caller starts and stops ``producer`` with it."""
    metrics = metrics or GatewayMetrics()
    svc = FhirService(settings, producer, metrics)
    app = web.Application(client_max_size=settings.gateway_max_message_bytes)
    app.router.add_post("/fhir/Observation", svc.observation)
    app.router.add_post("/fhir", svc.bundle)
    app.router.add_post("/fhir/", svc.bundle)
    app.router.add_get("/fhir/metadata", svc.metadata)
    app.router.add_get("/metrics", svc.metrics_page)
    app.router.add_get("/health", _health)
    app[SERVICE] = svc

    async def _start(_app: web.Application) -> None:
        await producer.start()

    async def _stop(_app: web.Application) -> None:
        await producer.stop()

    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


async def _health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
