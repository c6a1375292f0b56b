"""ORU^R01 parsing, mapping and ACKs, without a broker (the service on an in-memory producer)."""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

import msgspec
import pytest

from tests.gateways.fakes import FakeProducer
from vigil.gateways.hl7_message import build_ack, parse, parse_dtm, unescape
from vigil.gateways.hl7_service import Hl7Service
from vigil.gateways.intake import Door
from vigil.gateways.samples import BPM, HR, MMHG, PATIENT_MRN, PCT, SPO2, obx, oru
from vigil.settings import VigilSettings
from vigil.stream.pseudonym import pseudonymize
from vigil.stream.validation import record_id_of
from vigil.wire.records import DLQ_DECODER, VITALS_DECODER

UTC = ZoneInfo("UTC")
DOOR = Door("test-key", "mrn", 300_000)


def segments(ack: bytes) -> list[list[str]]:
    return [s.split("|") for s in ack.decode().split("\r") if s]


def msa(ack: bytes) -> list[str]:
    return next(s for s in segments(ack) if s[0] == "MSA")


def errs(ack: bytes) -> list[list[str]]:
    return [s for s in segments(ack) if s[0] == "ERR"]


def service(**kw) -> tuple[Hl7Service, FakeProducer]:
    s = VigilSettings(hl7_timezone="Europe/Berlin", pseudonym_key="test-key", **kw)
    prod = FakeProducer()
    return Hl7Service(s, prod), prod  # type: ignore[arg-type]


def test_multi_obx_message_maps_every_vital_and_skips_the_device_rows() -> None:
    p = parse(oru(), DOOR, UTC)
    assert p.ack_code == "AA" and p.issues == []
    [rec] = p.records
    got = {(o.code, o.value, o.unit, o.method) for o in rec.observations}
    assert got == {("HR", 82.0, "/min", "ecg"), ("SpO2", 97.0, "%", None),
                   ("RR", 18.0, "/min", None), ("SBP", 121.0, "mm[Hg]", "non-invasive"),
                   ("DBP", 77.0, "mm[Hg]", "non-invasive"), ("Temp", 37.1, "Cel", None)}
    assert rec.patient == pseudonymize(PATIENT_MRN, "test-key", "mrn")
    assert (rec.unit, rec.bed, rec.source) == ("MICU", "12-B", "hl7:MICU_A")
    assert rec.event_time.isoformat() == "2026-03-01T11:59:00+01:00"
    assert rec.event_id == "MSG0001:3"  # control id : position of the group's first OBX
    assert rec.patient_info is not None and rec.patient_info.sex == "female"
    assert rec.patient_info.age_years == 69.0  # from PID-7, which itself never leaves


def test_repeated_obr_groups_keep_their_own_times() -> None:
    # group 2 has no OBX-14: its OBR-7 is used; a different OBR-7 makes a second record
    msg = oru(obr_groups=2).replace(b"OBR|2|MSG0001^GW_PHILIPS||182777000^monitoring of "
                                    b"patient^SNOMED-CT|||20260301115900+0100",
                                    b"OBR|2|MSG0001^GW_PHILIPS||182777000^monitoring of "
                                    b"patient^SNOMED-CT|||20260301120400+0100")
    p = parse(msg, DOOR, UTC)
    assert p.ack_code == "AA"
    assert [r.event_time.isoformat() for r in p.records] == ["2026-03-01T11:59:00+01:00",
                                                             "2026-03-01T12:04:00+01:00"]
    assert len({r.event_id for r in p.records}) == 2
    assert [o.value for o in p.records[1].observations if o.code == "HR"] == [84.0]


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_segment_terminators(sep: str) -> None:
    p = parse(oru(sep=sep), DOOR, UTC)
    assert p.ack_code == "AA" and len(p.records[0].observations) == 6


def test_escape_sequences_are_resolved() -> None:
    assert unescape(r"a\F\b\S\c\T\d\R\e\E\f") == "a|b^c&d~e\\f"
    msg = oru().replace(b"PV1||I|MICU^12^B", b"PV1||I|MICU\\F\\EAST^12\\T\\A^B\\S\\1")
    p = parse(msg, DOOR, UTC)
    assert (p.records[0].unit, p.records[0].bed) == ("MICU|EAST", "12&A-B^1")
    # an escaped value in PID-3 is the identifier with the separator in it
    msg = oru().replace(f"{PATIENT_MRN}^^^HOSP".encode(), b"A\\S\\1^^^HOSP")
    assert parse(msg, DOOR, UTC).records[0].patient == pseudonymize("A^1", "test-key", "mrn")


def test_hr_900_is_refused_with_an_err_and_the_other_obx_are_used() -> None:
    svc, prod = service()
    ack = asyncio.run(svc.handle(oru(hr="900")))
    assert msa(ack)[1:3] == ["AE", "MSG0001"]
    [err] = errs(ack)
    assert err[2] == "OBX^3^5" and err[4] == "E" and err[5].startswith("implausible^HR 900")
    [rec] = [VITALS_DECODER.decode(v) for v in prod.topic(svc.settings.topic_vitals)]
    assert {o.code for o in rec.observations} == {"SpO2", "RR", "SBP", "DBP", "Temp"}
    [dl] = [DLQ_DECODER.decode(v) for v in prod.topic(svc.settings.topic_dlq)]
    assert dl.scope == "observations" and dl.reason == "implausible"
    assert dl.dlq_id == "hl7:MSG0001:observations"


def test_obx_11_x_is_not_used_and_the_ack_says_so() -> None:
    msg = oru(extra=[obx(99, SPO2, "88", PCT, status="X")])
    svc, prod = service()
    ack = asyncio.run(svc.handle(msg))
    assert msa(ack)[1] == "AA"  # nothing for the sender to fix: W, not E
    [err] = errs(ack)
    assert err[4] == "W" and "result status X" in err[8] and "not used" in err[8]
    rec = VITALS_DECODER.decode(prod.topic(svc.settings.topic_vitals)[0])
    assert [o.value for o in rec.observations if o.code == "SpO2"] == [97.0]


def test_unknown_code_is_a_counted_rejection_of_the_observation_only() -> None:
    msg = oru(extra=[obx(99, "148066^MDC_ECG_V_P_C_RATE^MDC", "3", BPM)])
    svc, prod = service()
    ack = asyncio.run(svc.handle(msg))
    assert msa(ack)[1] == "AA"
    assert errs(ack)[0][5].startswith("unknown_code")
    assert svc.metrics.observations_refused.labels("hl7", "unknown_code")._value.get() == 1
    assert len(prod.topic(svc.settings.topic_vitals)) == 1


def test_unknown_unit_is_an_error() -> None:
    msg = oru(extra=[obx(99, SPO2, "0.97", "262656^MDC_DIM_DIMLESS^MDC")])
    p = parse(msg, DOOR, UTC)
    assert p.ack_code == "AE" and p.issues[0].reason == "unknown_unit"


def test_adt_message_is_rejected_ar_and_nothing_is_produced() -> None:
    adt = (b"MSH|^~\\&|ADT|HOSP|VIGIL|HOSP|20260301120000||ADT^A01^ADT_A01|ADT77|P|2.5\r"
           b"EVN|A01|20260301120000\rPID|||4711^^^HOSP^MR||Mustermann^Erika\rPV1||I|MICU^1^1\r")
    svc, prod = service()
    ack = asyncio.run(svc.handle(adt))
    assert msa(ack)[1:3] == ["AR", "ADT77"]
    assert errs(ack)[0][3].startswith("200^Unsupported message type")
    assert prod.topic(svc.settings.topic_vitals) == []
    [dl] = [DLQ_DECODER.decode(v) for v in prod.topic(svc.settings.topic_dlq)]
    assert dl.scope == "record" and "Mustermann" not in dl.payload and "4711" not in dl.payload


def test_timestamp_without_offset_is_read_in_the_hospital_zone() -> None:
    p = parse(oru(time="202607011200"), DOOR, ZoneInfo("Europe/Berlin"))
    assert p.records[0].event_time.utcoffset().total_seconds() == 7200  # CEST
    assert parse_dtm("202601011200", ZoneInfo("Europe/Berlin")).utcoffset().seconds == 3600
    assert parse_dtm("202601011200", UTC).utcoffset().seconds == 0


def test_bad_obx_time_is_that_obx_error() -> None:
    msg = oru(extra=[obx(99, HR, "80", BPM, time="2026-03-01T12:00")])
    p = parse(msg, DOOR, UTC)
    assert p.ack_code == "AE" and p.issues[0].reason == "bad_time"
    assert p.issues[0].field == 14


def test_no_pid3_is_ar() -> None:
    msg = oru().replace(f"PID|||{PATIENT_MRN}^^^HOSP^MR~999888^^^NATIONAL^PI".encode(),
                        b"PID|||")
    p = parse(msg, DOOR, UTC)
    assert p.ack_code == "AR" and p.message_issue is not None
    assert p.message_issue.reason == "no_patient"


def test_mr_identifier_is_chosen_over_the_first() -> None:
    msg = oru().replace(f"{PATIENT_MRN}^^^HOSP^MR~999888^^^NATIONAL^PI".encode(),
                        f"999888^^^NATIONAL^PI~{PATIENT_MRN}^^^HOSP^MR".encode())
    assert parse(msg, DOOR, UTC).records[0].patient == pseudonymize(PATIENT_MRN, "test-key",
                                                                     "mrn")


def test_resend_gives_the_same_record_ids() -> None:
    a, b = parse(oru(), DOOR, UTC), parse(oru(), DOOR, UTC)
    assert [record_id_of(r) for r in a.records] == [record_id_of(r) for r in b.records]
    assert parse(oru("OTHER"), DOOR, UTC).records[0].event_id != a.records[0].event_id


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5.1", "2.6"])
def test_versions(version: str) -> None:
    p = parse(oru(version=version), DOOR, UTC)
    assert p.ack_code == "AA"
    ack = build_ack(p.header, "AE", [])
    assert segments(ack)[0][11] == version


def test_unsupported_version_and_garbage_are_ar() -> None:
    assert parse(oru(version="9.9"), DOOR, UTC).ack_code == "AR"
    for junk in (b"", b"hello", b"\x00\xff\xfe", b"MSH|", b"MSH|^~\\&|" + b"|" * 50):
        p = parse(junk, DOOR, UTC)
        assert p.ack_code == "AR"
        assert msa(build_ack(p.header, "AR", [p.message_issue]))[1] == "AR"


def test_structured_numeric_and_ucum_units() -> None:
    msg = oru(extra=[obx(99, "8480-6^Systolic blood pressure^LN", "^118", "mm[Hg]^mmHg^UCUM",
                         vtype="SN")])
    p = parse(msg, DOOR, UTC)
    assert ("SBP", 118.0, "mm[Hg]") in {(o.code, o.value, o.unit)
                                        for r in p.records for o in r.observations}


def test_ack_layout_is_hl7_v26() -> None:
    p = parse(oru(hr="900"), DOOR, UTC)
    ack = build_ack(p.header, p.ack_code, p.issues)
    msh = segments(ack)[0]
    assert msh[2:6] == ["VIGIL", "HOSP", "GW_PHILIPS^00095F0000ABCDEF^EUI-64", "MICU_A"]
    assert msh[8] == "ACK^R01^ACK" and msh[11] == "2.6"
    err = errs(ack)[0]
    assert err[1].startswith("OBX^3^5^") and err[3] == "207^Application internal error^HL70357"


def test_the_dead_letter_is_de_identified() -> None:
    svc, prod = service()
    asyncio.run(svc.handle(oru(hr="900", extra=["NTE|1||Patient Erika Mustermann is anxious",
                                                 obx(99, "ST", "x", "", vtype="ST")])))
    [raw] = prod.topic(svc.settings.topic_dlq)
    text = raw.decode()
    for secret in (PATIENT_MRN, "Mustermann", "Erika", "19560312", "999888"):
        assert secret not in text
    dl = msgspec.json.decode(raw)
    assert "PID|||pt-" in dl["payload"] and "MDC_ECG_HEART_RATE^MDC|1.1.1.1|900|" in dl["payload"]


def test_broker_down_answers_ar_207_and_resend_works() -> None:
    svc, prod = service()
    prod.down = True
    ack = asyncio.run(svc.handle(oru()))
    assert msa(ack)[1] == "AR"
    assert errs(ack)[0][3].startswith("207^") and "resend" in errs(ack)[0][8]
    assert svc.metrics.broker_errors.labels("hl7")._value.get() == 1
    prod.down = False
    assert msa(asyncio.run(svc.handle(oru())))[1] == "AA"


def test_mixed_mdc_and_loinc_alternate_coding() -> None:
    msg = oru(extra=[obx(99, "999999^VENDOR_HR^99X^8867-4^Heart rate^LN", "77", BPM),
                     obx(98, "150033^MDC_PRESS_BLD_ART_SYS^MDC", "101", MMHG)])
    p = parse(msg, DOOR, UTC)
    obs = {(o.code, o.value, o.method) for r in p.records for o in r.observations}
    assert ("HR", 77.0, None) in obs and ("SBP", 101.0, "invasive") in obs


def test_cached_field_parses_give_the_same_records_and_keep_no_identifier() -> None:
    from vigil.gateways import hl7_message

    hl7_message._FIELDS.clear()
    hl7_message._PID_FIELDS.clear()
    cold = parse(oru(), DOOR, UTC)
    warm = parse(oru(), DOOR, UTC)  # every field now comes from the caches
    assert cold.records == warm.records and cold.issues == warm.issues
    assert hl7_message._PID_FIELDS._items  # PID-3/7/8 are cached ...
    held = repr(list(hl7_message._PID_FIELDS._items.items()))
    held += repr(list(hl7_message._FIELDS._items.items()))
    for secret in (PATIENT_MRN, "999888", "19560312", "Mustermann"):
        assert secret not in held  # ... as digests only; names are never parsed at all
