"""HL7 v2 ORU^R01 (IHE PCD-01) to Vigil records, and the original-mode ACK that answers it.

References: HL7 v2.6 chapter 2 (control: MSH, MSA, ERR, escape sequences §2.7, original
acknowledgment rules §2.9.2), chapter 7 (ORU^R01, OBR, OBX), and IHE PCD Technical
Framework Vol. 2 (PCD-01 "Communicate PCD Data": MDC codes in OBX-3, the device hierarchy in
OBX-4, OBX-11 result status, OBX-14 / OBR-7 observation times).

The message is parsed with ``hl7apy`` (tolerant validation, any of v2.3 to v2.8.2; only the
fields Vigil reads, with a cache, see "hl7apy" below), segments taken in order so that
several OBR groups, and even several PID groups, are handled alike:
PID starts a patient, PV1 gives its unit and bed, OBR an observation time, each OBX is one
observation. Every field value is unescaped (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\X..\\``).

Outcomes (:class:`Parsed`):

- the message itself is unusable (not parseable, not ORU^R01, an unsupported version, no
  PID-3): nothing is produced, the ACK is AR;
- some OBX are refused (HR 900, an unknown unit, a bad OBX-14): the others are produced, the
  ACK is AE with one ERR per refused OBX (severity E);
- OBX Vigil does not use by design (a code it has no use for, result status X / D / W, a
  non-numeric value such as a device mode): counted, dead-lettered, reported with an ERR of
  severity W, and the ACK stays AA since there is nothing the sender should fix;
- device-hierarchy OBX (the MDS / VMD / channel rows of PCD-01, with no value) are skipped.

The patient is PID-3 (the repetition with identifier type MR, else the first), pseudonymised
here; names, birth dates and the raw identifiers never leave this module: the dead letter
keeps a de-identified copy of the message (:func:`redact`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from vigil.gateways import mdc
from vigil.gateways.intake import Door, Issue, short_id
from vigil.wire.records import Observation, PatientInfo, VitalsRecord, whole_years

__all__ = ["Header", "Parsed", "parse", "build_ack", "unescape", "parse_dtm", "redact",
           "read_header", "SUPPORTED_VERSIONS", "MAX_SEGMENTS"]

AckCode = Literal["AA", "AE", "AR"]

SUPPORTED_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1",
                                "2.8", "2.8.1", "2.8.2"})
MAX_SEGMENTS = 5000  # a PCD-01 message has tens to a few hundred; more is refused unparsed
MAX_OBSERVATIONS = 256  # VitalsRecord.observations max_length: a larger group is split

USED_STATUS = {"F": "final", "R": "not verified", "C": "corrected", "U": "changed to final"}
NOT_USED_STATUS = {"X": "results cannot be obtained", "D": "deleted", "W": "wrong",
                   "P": "preliminary", "I": "pending", "N": "not asked", "O": "order detail",
                   "S": "partial", "A": "amended base"}
NUMERIC_TYPES = {"NM", "SN"}

_STD = {"field": "|", "comp": "^", "rep": "~", "esc": "\\", "sub": "&"}
_DTM = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.(\d{1,4}))?"
                  r"(?:([+-])(\d{2})(\d{2}))?$")
# Vigil's door reasons -> HL7 table 0357 (ERR-3); Vigil's own reason is in ERR-5
_HL7_CODE_OF = {"unknown_code": 103, "unknown_unit": 103, "not_finite": 102, "schema": 102}
_SEG_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")


# --- encoding characters, escapes ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Enc:
    """The separators a message declares in MSH-1 / MSH-2."""

    field: str = "|"
    comp: str = "^"
    rep: str = "~"
    esc: str = "\\"
    sub: str = "&"


def unescape(text: str, enc: Enc = Enc()) -> str:
    r"""Resolve HL7 escape sequences (v2.6 §2.7.4) in one leaf value.

    >>> unescape(r"ICU\F\3 \S\ \T\ \R\ \E\ \X41\ \.br\end")
    'ICU|3 ^ & ~ \\ A \nend'
    """
    e = enc.esc
    if not e or e not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != e:
            out.append(ch)
            i += 1
            continue
        j = text.find(e, i + 1)
        if j < 0:  # a lone escape character: keep it
            out.append(text[i:])
            break
        seq = text[i + 1:j]
        i = j + 1
        if seq == "F":
            out.append(enc.field)
        elif seq == "S":
            out.append(enc.comp)
        elif seq == "T":
            out.append(enc.sub)
        elif seq == "R":
            out.append(enc.rep)
        elif seq == "E":
            out.append(e)
        elif seq in ("H", "N") or seq.startswith(("C", "M", "Z")):
            pass  # highlighting and character-set switches carry no text
        elif seq == ".br":
            out.append("\n")
        elif seq.startswith("X") and len(seq) % 2 == 1:
            try:
                out.append(bytes.fromhex(seq[1:]).decode("utf-8", "replace"))
            except ValueError:
                out.append(f"{e}{seq}{e}")
        else:
            out.append(f"{e}{seq}{e}")
    return "".join(out)


def escape(text: str, enc: Enc = Enc()) -> str:
    """Escape ``text`` for a field of a message written with ``enc`` (the ACK)."""
    e = enc.esc
    out = text.replace(e, f"{e}E{e}")
    for ch, code in ((enc.field, "F"), (enc.comp, "S"), (enc.sub, "T"), (enc.rep, "R")):
        out = out.replace(ch, f"{e}{code}{e}")
    return out.replace("\r", " ").replace("\n", " ")


def components(raw: str, enc: Enc) -> list[str]:
    """The unescaped components of one field repetition (subcomponents kept joined)."""
    return [unescape(c, enc) for c in raw.split(enc.comp)]


def _comp(comps: list[str], i: int) -> str:
    return comps[i - 1].strip() if len(comps) >= i else ""


# --- time ----------------------------------------------------------------------------------

class BadTime(ValueError):
    """An HL7 DTM Vigil cannot place on the time line."""


def parse_dtm(text: str, zone: ZoneInfo) -> datetime:
    """An HL7 DTM / TS (``YYYYMMDDHHMM[SS[.S[S[S[S]]]]]][+/-ZZZZ]``) as an aware datetime.

    A timestamp with an offset is exact. One without is read in the hospital's zone
    (``VIGIL_HL7_TIMEZONE``), never silently as UTC; in the hour repeated when clocks go back
    it is the first occurrence (``fold=0``). Precision coarser than minutes is refused: a
    vital sign at "some time on 1 March" cannot be windowed.

    >>> parse_dtm("20260301115930+0100", ZoneInfo("UTC")).isoformat()
    '2026-03-01T11:59:30+01:00'
    >>> parse_dtm("202607011200", ZoneInfo("Europe/Berlin")).isoformat()
    '2026-07-01T12:00:00+02:00'
    """
    m = _DTM.match(text.strip())
    if m is None:
        raise BadTime(f"timestamp {text[:40]!r} is not an HL7 DTM with at least minutes "
                      "(YYYYMMDDHHMM[SS][+/-ZZZZ])")
    y, mo, d, h, mi, s, frac, sign, oh, om = m.groups()
    try:
        micro = int((frac or "0").ljust(6, "0")[:6])
        tz: timezone | ZoneInfo = zone
        if sign:
            off = timedelta(hours=int(oh), minutes=int(om))
            if off >= timedelta(hours=24) or int(om) >= 60:
                raise BadTime(f"offset {sign}{oh}{om} is not a valid UTC offset")
            tz = timezone(off if sign == "+" else -off)
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), micro, tzinfo=tz)
    except ValueError as exc:
        raise BadTime(f"timestamp {text[:40]!r} is not a calendar time: {exc}") from None


# --- the header, read without the parser (an AR needs it when the parser fails) -------------

@dataclass(frozen=True, slots=True)
class Header:
    """The MSH fields an ACK echoes, as raw text in the sender's encoding."""

    enc: Enc
    fields: tuple[str, ...]  # fields[n] is MSH-n (MSH-1 is the field separator)

    def get(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def comps(self, n: int) -> list[str]:
        first = self.get(n).split(self.enc.rep)[0]
        return components(first, self.enc)

    @property
    def control_id(self) -> str:
        return unescape(self.get(10), self.enc).strip()

    @property
    def version(self) -> str:
        return _comp(self.comps(12), 1)

    @property
    def message_type(self) -> tuple[str, str]:
        c = self.comps(9)
        return _comp(c, 1).upper(), _comp(c, 2).upper()

    @property
    def facility(self) -> str:
        return _comp(self.comps(4), 1) or _comp(self.comps(3), 1)


def split_segments(text: str) -> list[str]:
    """Segments of a message: ``\\r`` is the HL7 terminator, ``\\n`` and ``\\r\\n`` are
    accepted because file-based and some TCP senders use them."""
    return [s for s in re.split(r"\r\n|\r|\n", text) if s.strip()]


def read_header(segments: list[str]) -> Header | None:
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        return None
    seg = segments[0]
    fs = seg[3]
    if fs.isalnum() or fs.isspace():
        return None
    chars = seg[4:].split(fs, 1)[0]
    if len(chars) < 2 or len(set(chars[:4])) != len(chars[:4]) or fs in chars:
        return None
    enc = Enc(field=fs, comp=chars[0], rep=chars[1] if len(chars) > 1 else "~",
              esc=chars[2] if len(chars) > 2 else "\\", sub=chars[3] if len(chars) > 3 else "&")
    parts = seg.split(fs)
    return Header(enc, ("MSH", fs, *parts[1:]))


# --- the parsed message --------------------------------------------------------------------

@dataclass(slots=True)
class Parsed:
    """Everything the service needs to produce and answer one message."""

    header: Header | None
    records: list[VitalsRecord] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    message_issue: Issue | None = None  # set: the message is refused whole (AR)
    observations: int = 0  # OBX that carried a value (device-hierarchy rows not counted)
    used: int = 0  # observations in ``records``
    source: str = "hl7"
    patients: list[str] = field(default_factory=list)  # pseudonyms, one per PID, in order
    text: str = field(default="", repr=False)  # the message as received: never logged
    complete: bool = False  # every segment was read (the PIDs' pseudonyms are known)
    _redacted: str | None = field(default=None, repr=False)

    @property
    def redacted(self) -> str:
        """The de-identified message for the dead letter (:func:`redact`), made on first use:
        most messages have no dead letter, and redacting took a fifth of a message's parse."""
        if self._redacted is None:
            self._redacted = redact(self.text, self if self.complete else None)
        return self._redacted

    @property
    def control_id(self) -> str:
        return self.header.control_id if self.header else ""

    @property
    def ack_code(self) -> AckCode:
        if self.message_issue is not None:
            return "AR"
        return "AE" if any(i.severity == "E" for i in self.issues) else "AA"


def _refuse(parsed: Parsed, reason: str, detail: str, code: int, segment: str | None = None,
            seq: int | None = None, fld: int | None = None) -> Parsed:
    parsed.message_issue = Issue(reason, detail, "E", code, segment, seq, fld)
    parsed.records = []
    parsed.used = 0
    return parsed


def decode(raw: bytes) -> str:
    """Bytes to text: UTF-8 (PCD-01's ``UNICODE UTF-8``), else Latin-1, which never fails."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass(slots=True)
class _Patient:
    pseudonym: str | None = None
    unit: str | None = None
    bed: str | None = None
    info: PatientInfo | None = None
    birth: str = ""  # PID-7 raw, only to compute an age


def parse(raw: bytes, door: Door, zone: ZoneInfo, now: datetime | None = None) -> Parsed:
    """Parse and map one message; never raises (a bug becomes an AR with ``internal_error``)."""
    try:
        return _parse(raw, door, zone, now or datetime.now(UTC))
    except Exception as exc:  # noqa: BLE001 - the sender must get an answer, not a crash
        text = decode(raw)
        header = read_header(split_segments(text))
        p = Parsed(header, text=text)
        return _refuse(p, "internal_error", f"Vigil could not process the message "
                       f"({type(exc).__name__}); resend later or report it", 207)


def _parse(raw: bytes, door: Door, zone: ZoneInfo, now: datetime) -> Parsed:
    text = decode(raw).lstrip("\x0b").rstrip("\x1c\r\n")
    segments = split_segments(text)
    header = read_header(segments)
    parsed = Parsed(header, text=text)
    if header is None:
        return _refuse(parsed, "unparsable", "the message does not start with a valid MSH "
                       "segment", 100, "MSH", 1)
    parsed.source = "hl7:" + (short_id(header.facility, 58) if header.facility else "unknown")
    if len(segments) > MAX_SEGMENTS:
        return _refuse(parsed, "too_large", f"{len(segments)} segments: at most {MAX_SEGMENTS}"
                       " per message", 207)
    if not header.control_id:
        return _refuse(parsed, "schema", "MSH-10 (message control id) is empty", 101, "MSH",
                       1, 10)
    mtype, event = header.message_type
    if mtype != "ORU":
        return _refuse(parsed, "unsupported_message", f"message type {mtype or '(empty)'}^"
                       f"{event}: Vigil accepts ORU^R01 (IHE PCD-01) only", 200, "MSH", 1, 9)
    if event not in ("R01", ""):
        return _refuse(parsed, "unsupported_message", f"event {event}: Vigil accepts ORU^R01 "
                       "only", 201, "MSH", 1, 9)
    if header.version not in SUPPORTED_VERSIONS:
        return _refuse(parsed, "unsupported_message", f"HL7 version {header.version[:10]!r}: "
                       "Vigil accepts 2.3 to 2.8.2", 203, "MSH", 1, 12)
    try:
        msh_time = parse_dtm(unescape(header.get(7), header.enc), zone)
    except BadTime as exc:
        return _refuse(parsed, "bad_time", f"MSH-7: {exc}", 102, "MSH", 1, 7)

    try:
        seg_list = _hl7apy_segments(segments)
    except Exception as exc:  # noqa: BLE001 - hl7apy's errors can quote field values
        return _refuse(parsed, "unparsable", f"not a valid HL7 {header.version} message "
                       f"({type(exc).__name__})", 102)

    enc = header.enc
    counts: dict[str, int] = {}
    patient: _Patient | None = None
    obr_time: datetime | None = None
    obr_seq = 0
    obx_ordinal = 0
    # (pseudonym, event time) -> [(ordinal, Observation)]; insertion order = message order
    groups: dict[tuple[str, datetime], list[tuple[int, Observation]]] = {}
    group_meta: dict[tuple[str, datetime], _Patient] = {}
    for name, fields in seg_list:
        counts[name] = counts.get(name, 0) + 1
        seq = counts[name]
        if name == "PID":
            patient = _read_pid(fields, enc, door)
            if patient.pseudonym is None:
                return _refuse(parsed, "no_patient", "PID-3 (patient identifier list) has no "
                               "identifier", 101, "PID", seq, 3)
            parsed.patients.append(patient.pseudonym)
            obr_time = None
        elif name == "PV1" and patient is not None:
            _read_pv1(fields, enc, patient)
        elif name == "OBR":
            obr_seq += 1
            obr_time = None
            raw7 = _first(fields, 7)
            if raw7:
                try:
                    obr_time = parse_dtm(unescape(raw7, enc), zone)
                except BadTime:
                    obr_time = None  # each OBX of the group then says why its time is bad
        elif name == "OBX":
            if patient is None:
                return _refuse(parsed, "no_patient", "an OBX comes before any PID segment",
                               100, "OBX", seq)
            obx_ordinal += 1
            res = _read_obx(fields, enc, seq, zone, obr_time, msh_time)
            if res is None:
                continue  # a device-hierarchy row (MDS / VMD / channel): no observation
            parsed.observations += 1
            if isinstance(res, Issue):
                parsed.issues.append(res)
                continue
            at, obs = res
            assert patient.pseudonym is not None
            verdict = door.check_one(patient.pseudonym, at, obs, int(now.timestamp() * 1000))
            if verdict is not None:
                parsed.issues.append(Issue(verdict.reason, verdict.detail, "E",
                                           _HL7_CODE_OF.get(verdict.reason, 207), "OBX", seq,
                                           6 if verdict.reason == "unknown_unit" else 5,
                                           obs.code, obs.value))
                continue
            key = (patient.pseudonym, at)
            groups.setdefault(key, []).append((obx_ordinal, obs))
            group_meta[key] = patient
    if patient is None:
        return _refuse(parsed, "no_patient", "the message has no PID segment", 100, "PID")

    for (pseudonym, at), items in groups.items():
        meta = group_meta[(pseudonym, at)]
        info = _with_age(meta, at)
        for start in range(0, len(items), MAX_OBSERVATIONS):
            chunk = items[start:start + MAX_OBSERVATIONS]
            parsed.records.append(VitalsRecord(
                patient=pseudonym,
                event_time=at,
                observations=[o for _, o in chunk],
                event_id=f"{short_id(header.control_id)}:{chunk[0][0]}",
                unit=meta.unit,
                bed=meta.bed,
                source=parsed.source,
                patient_info=info,
            ))
            parsed.used += len(chunk)
    parsed.complete = True
    return parsed


# --- hl7apy: the fields Vigil reads, parsed per the version's segment definitions -------------
#
# Parsing a whole PCD-01 message into hl7apy's tree (message, segments, fields, components,
# subcomponents) took ~20 ms for 12 segments, most of it building objects for fields nobody
# reads (PID-5 names, OBR-4, MSH-21 ...): 31 messages/s where a hospital gateway sends hundreds.
# So hl7apy does what it did for Vigil before, only less of it: its message-level checks
# (``get_message_info``: MSH, encoding characters, version), its check of every segment's name,
# and ``parse_field`` (typed per the version's segment definition, tolerant validation) on the
# fields Vigil reads (:data:`READ_FIELDS`), whose ER7 Vigil then reads. Fields Vigil does not
# read, names among them, are not parsed at all.
#
# Monitor messages repeat themselves: the same codes, units, device rows, beds and values come
# back in every message, and the beds of a ward report at the same instants. So hl7apy's answer
# for one field text is kept (:class:`_FieldCache`, bounded LRU, fields up to 256 characters).
# PID-3 / PID-7 / PID-8 are cached too (a patient's PID comes with every message; parsing it
# was most of what was left), but their cache never holds the text: its key is a keyed digest
# (a random key of this process) and its value only says "hl7apy returned the text unchanged",
# so that no identifier or birth date outlives its message in the listener's memory.

READ_FIELDS: dict[str, tuple[int, ...]] = {
    "PID": (3, 7, 8),
    "PV1": (3,),
    "OBR": (7,),
    "OBX": (2, 3, 5, 6, 11, 14),
}
FIELD_CACHE_SIZE = 8192  # distinct (segment, field, text): codes, units, values, times
PID_CACHE_SIZE = 4096  # distinct PID fields: a few per patient a listener serves
FIELD_CACHE_MAX_CHARS = 256  # a longer field is parsed every time (no large keys kept)

Fields = dict[int, list[str]]
Enc7 = tuple[tuple[str, str], ...]  # hl7apy's encoding characters, hashable


def _hl7apy_message_info(msh: str) -> tuple[str, Enc7]:
    """hl7apy's own reading of MSH (raises on duplicate or missing encoding characters and on
    a version it has no definitions for): the version and the encoding characters it uses."""
    from hl7apy import check_version
    from hl7apy.parser import get_message_info

    encoding_chars, _structure, version = get_message_info(msh)
    check_version(version)
    return version, tuple(sorted(encoding_chars.items()))


@lru_cache(maxsize=1024)
def _segment_definition(name: str, version: str) -> tuple[dict[str, object], bool]:
    """The field references of segment ``name`` in ``version`` and whether it takes fields
    beyond its definition; raises hl7apy's ``InvalidName`` for a name hl7apy refuses (not a
    known segment of that version and not a Z segment), as its message parser does."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.core import Segment

    seg = Segment(name, version=version, validation_level=VALIDATION_LEVEL.TOLERANT)
    return seg.structure_by_name, bool(seg.allow_infinite_children)


def _parse_field(segment: str, n: int, raw: str, version: str, enc: Enc7) -> tuple[str, ...]:
    """hl7apy's ``parse_field`` on each repetition of field ``n``: their ER7, in order; an
    empty tuple for a field beyond the version's definition (Vigil reads none of those)."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_field

    refs, infinite = _segment_definition(segment, version)
    name = f"{segment}_{n}"
    entry = refs.get(name)
    ref = entry["ref"] if isinstance(entry, dict) else None
    chars = dict(enc)
    out: list[str] = []
    for rep in raw.split(chars["REPETITION"]):
        f = parse_field(rep, name, version, chars, VALIDATION_LEVEL.TOLERANT, ref, infinite)
        if f.name is None:
            return ()
        out.append(f.to_er7())
    return tuple(out)


class _FieldCache:
    """hl7apy's answers for recently seen field texts; bounded, safe across threads.

    With ``private`` the key is a keyed BLAKE2b digest of the text and only answers that
    equal the text's own repetitions are kept (as ``None``): nothing of the text is stored.
    """

    def __init__(self, size: int, *, private: bool = False) -> None:
        self.size = size
        self.private = private
        self._key = secrets.token_bytes(32)
        self._items: OrderedDict[object, tuple[str, ...] | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, segment: str, n: int, raw: str, version: str, enc: Enc7,
            rep: str) -> tuple[str, ...]:
        """hl7apy's ER7 of the repetitions of ``raw`` (field ``n`` of ``segment``; ``rep`` is
        the repetition separator of ``enc``), from the cache when it was seen before."""
        if len(raw) > FIELD_CACHE_MAX_CHARS:
            return _parse_field(segment, n, raw, version, enc)
        key: object = (segment, n, version, enc, hashlib.blake2b(
            raw.encode("utf-8", "surrogatepass"), key=self._key, digest_size=16).digest()
            if self.private else raw)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                hit = self._items[key]
                return tuple(raw.split(rep)) if hit is None else hit
        reps = _parse_field(segment, n, raw, version, enc)
        same = reps == tuple(raw.split(rep))
        if self.private and not same:
            return reps  # an answer that differs from the text would store the text
        with self._lock:
            self._items[key] = None if same else reps
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        return reps

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_FIELDS = _FieldCache(FIELD_CACHE_SIZE)
_PID_FIELDS = _FieldCache(PID_CACHE_SIZE, private=True)


def _hl7apy_segments(segments: list[str]) -> list[tuple[str, Fields]]:
    """(segment name, {field number: [ER7 repetitions]}) in message order, via hl7apy.

    Segments are read as hl7apy's parser reads them (stripped, name = first three
    characters, fields after the fourth); only a blank field is absent, as in hl7apy's tree.
    """
    version, enc = _hl7apy_message_info(segments[0].lstrip())
    chars = dict(enc)
    fs, rep = chars["FIELD"], chars["REPETITION"]
    out: list[tuple[str, Fields]] = []
    for text in segments:
        seg = text.strip()
        name = seg[:3]
        _segment_definition(name, version)  # the name check of hl7apy's parse_segment
        name = name.upper()
        fields: Fields = {}
        wanted = READ_FIELDS.get(name)
        if wanted:
            parts = seg[4:].split(fs)
            cache = _PID_FIELDS if name == "PID" else _FIELDS
            for n in wanted:
                raw = parts[n - 1] if n <= len(parts) else ""
                if raw.strip():
                    reps = cache.get(name, n, raw, version, enc, rep)
                    if reps:
                        fields[n] = list(reps)
        out.append((name, fields))
    return out


def _first(fields: dict[int, list[str]], n: int) -> str:
    reps = fields.get(n)
    return reps[0] if reps else ""


def _read_pid(fields: dict[int, list[str]], enc: Enc, door: Door) -> _Patient:
    ids: list[list[str]] = []
    for raw in fields.get(3, []):
        for rep in raw.split(enc.rep):
            c = components(rep, enc)
            if _comp(c, 1):
                ids.append(c)
    p = _Patient()
    if ids:
        chosen = next((c for c in ids if _comp(c, 5).upper() == "MR"), ids[0])
        p.pseudonym = door.patient(_comp(chosen, 1))
    sex = _comp(components(_first(fields, 8), enc), 1).upper()
    p.info = PatientInfo(sex={"F": "female", "M": "male", "O": "other", "U": "unknown",
                              "A": "other", "N": "unknown"}.get(sex)) if sex else None  # type: ignore[arg-type]
    p.birth = _comp(components(_first(fields, 7), enc), 1)
    return p


def _read_pv1(fields: dict[int, list[str]], enc: Enc, p: _Patient) -> None:
    c = components(_first(fields, 3), enc)
    point, room, bed = _comp(c, 1), _comp(c, 2), _comp(c, 3)
    p.unit = point[:64] or None
    p.bed = (f"{room}-{bed}" if room and bed else bed or room)[:64] or None


def _with_age(p: _Patient, at: datetime) -> PatientInfo | None:
    """Age in whole years at the event (capped at 90, as HIPAA Safe Harbor aggregates ages
    over 89); the birth date itself never leaves the gateway."""
    info = p.info
    m = re.match(r"^(\d{4})(\d{2})(\d{2})", p.birth)
    if m is None:
        return info
    try:
        born = datetime(int(m[1]), int(m[2]), int(m[3])).date()
    except ValueError:
        return info
    day = at.date()
    years = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
    if not 0 <= years <= 130:
        return info
    return PatientInfo(age_years=whole_years(years), sex=info.sex if info else None)


def _read_obx(fields: dict[int, list[str]], enc: Enc, seq: int, zone: ZoneInfo,
              obr_time: datetime | None,
              msh_time: datetime) -> tuple[datetime, Observation] | Issue | None:
    """One OBX: its time (OBX-14, else OBR-7, else MSH-7) and observation, or why not."""
    vtype = _comp(components(_first(fields, 2), enc), 1).upper()
    raw5 = _first(fields, 5)
    if not raw5.strip():
        if not vtype:
            return None  # MDS / VMD / channel row of the PCD-01 containment tree
        return Issue("schema", f"OBX-5 is empty for value type {vtype}", "W", 101, "OBX", seq, 5)
    c3 = components(_first(fields, 3), enc)
    triplets = [(_comp(c3, 1), _comp(c3, 2), _comp(c3, 3)), (_comp(c3, 4), _comp(c3, 5),
                                                              _comp(c3, 6))]
    label = (_comp(c3, 2) or _comp(c3, 1) or "?")[:40]
    status = _comp(components(_first(fields, 11), enc), 1).upper()
    if status and status not in USED_STATUS:
        meaning = NOT_USED_STATUS.get(status, "not a result status Vigil uses")
        return Issue("result_status", f"{label}: OBX-11 result status {status[:3]} ({meaning})"
                     ": not used; Vigil uses F, R, C and U", "W", 0, "OBX", seq, 11)
    if vtype not in NUMERIC_TYPES:
        return Issue("not_numeric", f"{label}: value type {vtype[:3] or '(empty)'} is not "
                     "numeric (NM): not used", "W", 102, "OBX", seq, 2)
    hit = mdc.lookup(triplets)
    if hit is None:
        return Issue("unknown_code", f"observation {label} ({_comp(c3, 1)[:20]} "
                     f"{_comp(c3, 3)[:12]}) is not a code Vigil uses", "W", 103, "OBX", seq, 3)
    comps5 = components(raw5.split(enc.rep)[0], enc)
    text = _comp(comps5, 1)
    if vtype == "SN":  # structured numeric: comparator ^ num1 [^ separator ^ num2]
        if _comp(comps5, 1) not in ("", "=") or _comp(comps5, 3):
            return Issue("not_numeric", f"{hit.code}: structured numeric "
                         f"{(_comp(comps5, 1) + _comp(comps5, 3))[:8]!r} is not one value",
                         "E", 102, "OBX", seq, 5, hit.code)
        text = _comp(comps5, 2)
    try:
        if text.lower() in ("nan", "inf", "+inf", "-inf", "infinity"):
            value = float(text)
        elif _NUMBER.match(text):
            value = float(text)
        else:
            raise ValueError
    except ValueError:
        return Issue("not_numeric", f"{hit.code}: OBX-5 {text[:20]!r} is not a number", "E",
                     102, "OBX", seq, 5, hit.code)
    c6 = components(_first(fields, 6), enc)
    unit = mdc.unit_of(_comp(c6, 1), _comp(c6, 2), _comp(c6, 3)) if any(c6) else ""
    raw14 = _first(fields, 14)
    if raw14.strip():
        try:
            at = parse_dtm(unescape(raw14, enc), zone)
        except BadTime as exc:
            return Issue("bad_time", f"{hit.code}: OBX-14: {exc}", "E", 102, "OBX", seq, 14,
                         hit.code, value)
    elif obr_time is not None:
        at = obr_time
    else:
        at = msh_time
    return at, Observation(hit.code, value, unit, hit.method)


# --- de-identification of the dead letter's copy --------------------------------------------

# field numbers kept per segment; every other field is emptied, other segments keep their id
_KEEP: dict[str, set[int]] = {
    "MSH": set(range(1, 22)),
    "PV1": {1, 2, 3},
    "OBR": {1, 2, 3, 4, 7, 8},
    "OBX": {1, 2, 3, 4, 5, 6, 7, 8, 11, 14, 17, 18},
}


def redact(text: str, parsed: Parsed | None) -> str:
    """The message with every identifying field removed, for ``vigil.dlq``.

    PID keeps only PID-3, replaced by the pseudonym; PV1 keeps the location, OBR its codes and
    times, OBX its observation fields (the value only when it is numeric, OBX-16 responsible
    observer removed). Any other segment (NK1, PD1, NTE, Z segments ...) keeps its id only and
    a line that is not a segment becomes ``?``: the shape of a refused message is kept for
    whoever debugs the interface, not what could name a patient.
    """
    lines = split_segments(text)
    header = read_header(lines)
    fs = header.enc.field if header else "|"
    rep = header.enc.rep if header else "~"
    pseudos = parsed.patients if parsed else []
    out: list[str] = []
    pid_n = 0
    for line in lines:
        name = line[:3]
        if not _SEG_ID.match(name):
            out.append("?")
            continue
        parts = line.split(fs)
        if name == "MSH" and header is not None:
            out.append(line)
            continue
        if name == "PID":
            pid_n += 1
            pseudo = pseudos[pid_n - 1] if pid_n <= len(pseudos) else ""
            comp = header.enc.comp if header else "^"
            out.append(fs.join(["PID", "", "", f"{pseudo}{comp * 3}VIGIL" if pseudo else ""]))
            continue
        keep = _KEEP.get(name, set())
        if name == "OBX" and (len(parts) < 3 or parts[2].split(rep)[0].upper() not in
                              NUMERIC_TYPES):
            keep = keep - {5}
        kept = [name] + [p if i in keep else "" for i, p in enumerate(parts[1:], 1)]
        while len(kept) > 1 and kept[-1] == "":
            kept.pop()
        out.append(fs.join(kept))
    return "\r".join(out)


# --- the ACK ---------------------------------------------------------------------------------

_HL7_CODE_TEXT = {0: "Message accepted", 100: "Segment sequence error",
                  101: "Required field missing", 102: "Data type error",
                  103: "Table value not found", 200: "Unsupported message type",
                  201: "Unsupported event code", 202: "Unsupported processing id",
                  203: "Unsupported version id", 207: "Application internal error"}


def build_ack(header: Header | None, code: AckCode, issues: list[Issue],
              now: datetime | None = None) -> bytes:
    """An original-mode ACK (HL7 v2.6 §2.9.2): MSH, MSA, and one ERR per issue.

    MSA-1 is AA / AE / AR, MSA-2 echoes MSH-10; MSA-3 carries the first error as text for
    engines that predate ERR-2..8. Each ERR has ERR-1 (the v2.3/v2.4 ELD layout, kept for
    backward compatibility up to v2.6), ERR-2 the location (segment^sequence^field), ERR-3 the
    HL7 table 0357 code, ERR-4 the severity (table 0516), ERR-5 Vigil's reason and ERR-8 a
    sentence for the interface engineer. The ACK uses the standard encoding characters.
    """
    now = now or datetime.now(UTC)
    std = Enc()
    if header is not None:
        he = header.enc

        def echo(n: int) -> str:
            return "^".join(escape(c, std) for c in components(header.get(n).split(he.rep)[0],
                                                               he))
        version = header.version if header.version in SUPPORTED_VERSIONS else "2.6"
        event = header.message_type[1] or "R01"
        control = escape(header.control_id, std)[:199]
        processing = echo(11) or "P"
        recv_app, recv_fac, send_app, send_fac = echo(5), echo(6), echo(3), echo(4)
    else:
        version, event, control, processing = "2.6", "R01", "", "P"
        recv_app = recv_fac = send_app = send_fac = ""
    if not re.fullmatch(r"[A-Z0-9]{3}", event):
        event = "R01"
    mtype = "ACK^" + event + ("" if version in ("2.3", "2.3.1") else "^ACK")
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"
    segs = [
        "|".join(["MSH", "^~\\&", recv_app or "VIGIL", recv_fac, send_app, send_fac, stamp, "",
                  mtype, "V" + uuid.uuid4().hex[:19], processing, version]),
        "|".join(["MSA", code, control] + ([escape(issues[0].detail, std)[:80]]
                                           if code != "AA" and issues else [])),
    ]
    modern = version not in ("2.3", "2.3.1", "2.4")
    for i in issues[:100]:
        loc = "^".join(str(x) if x is not None else "" for x in (i.segment, i.seq, i.field))
        text = _HL7_CODE_TEXT.get(i.hl7_code, "Application internal error")
        eld = f"{loc}^{i.hl7_code}&{text}&HL70357" if version < "2.7" else ""
        detail = escape(i.detail, std)[:250]
        if modern:
            segs.append("|".join(["ERR", eld, loc, f"{i.hl7_code}^{text}^HL70357", i.severity,
                                  f"{escape(i.reason, std)}^{detail[:80]}^VIGIL", "", "",
                                  detail]))
        else:  # v2.3 / v2.4: ERR-1 only
            segs.append("|".join(["ERR", f"{loc}^{i.hl7_code}&{detail[:80]}&HL70357"]))
    return ("\r".join(segs) + "\r").encode("utf-8")
