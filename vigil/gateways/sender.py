"""``vigil hl7-send``: PhysioNet stays replayed as IHE PCD-01 ORU^R01 messages over MLLP.

What a monitor gateway does, so that monitor -> HL7 -> Kafka -> alert can be run on one
machine: each charted time of a stay becomes one ORU^R01 (MSH with the PCD-01 profile id,
PID with the stay's id as MR number, PV1 with unit and bed, one OBR, one OBX per vital with
its IEEE 11073-10101 code and unit), sent in event-time order at ``--speed`` and resent on AR
with a back-off, as gateways do. Labs have no monitor code and are not sent (counted).

Outcome labels (for the online model) have no HL7 monitor message either; with
``labels=True`` they are produced straight to Kafka under the pseudonym the listener gives
the same PID-3, so the worker joins them to the HL7-fed patients.
"""

from __future__ import annotations

import heapq
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from vigil.gateways.samples import PCD01_PROFILE
from vigil.kafka_config import kafka_python_options
from vigil.settings import VigilSettings
from vigil.stream.pseudonym import pseudonymize
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.stays import Stay
from vigil.stream.replay.timeline import Timeline
from vigil.wire.records import LabelRecord, VitalsRecord, encode

__all__ = ["SendStats", "MllpClient", "oru_r01", "send_stays", "send_path", "REVERSE_MDC"]

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"

# (Vigil code, method) -> (MDC code, refid, hierarchy OBX-4, MDC unit code, unit refid, scale)
REVERSE_MDC: dict[tuple[str, str | None], tuple[int, str, str, int, str, float]] = {
    ("HR", None): (147842, "MDC_ECG_HEART_RATE", "1.1.1.1", 264864, "MDC_DIM_BEAT_PER_MIN", 1),
    ("SpO2", None): (150456, "MDC_PULS_OXIM_SAT_O2", "1.2.1.1", 262688, "MDC_DIM_PERCENT", 1),
    ("RR", None): (151562, "MDC_RESP_RATE", "1.3.1.1", 264928, "MDC_DIM_RESP_PER_MIN", 1),
    ("Temp", None): (150344, "MDC_TEMP", "1.4.1.1", 268192, "MDC_DIM_DEGC", 1),
    ("SBP", None): (150021, "MDC_PRESS_BLD_NONINV_SYS", "1.5.1.1", 266016, "MDC_DIM_MMHG", 1),
    ("DBP", None): (150022, "MDC_PRESS_BLD_NONINV_DIA", "1.5.1.2", 266016, "MDC_DIM_MMHG", 1),
    ("MAP", None): (150023, "MDC_PRESS_BLD_NONINV_MEAN", "1.5.1.3", 266016, "MDC_DIM_MMHG", 1),
    ("SBP", "non-invasive"): (150021, "MDC_PRESS_BLD_NONINV_SYS", "1.5.1.1", 266016,
                              "MDC_DIM_MMHG", 1),
    ("DBP", "non-invasive"): (150022, "MDC_PRESS_BLD_NONINV_DIA", "1.5.1.2", 266016,
                              "MDC_DIM_MMHG", 1),
    ("MAP", "non-invasive"): (150023, "MDC_PRESS_BLD_NONINV_MEAN", "1.5.1.3", 266016,
                              "MDC_DIM_MMHG", 1),
    ("SBP", "invasive"): (150033, "MDC_PRESS_BLD_ART_SYS", "1.6.1.1", 266016, "MDC_DIM_MMHG", 1),
    ("DBP", "invasive"): (150034, "MDC_PRESS_BLD_ART_DIA", "1.6.1.2", 266016, "MDC_DIM_MMHG", 1),
    ("MAP", "invasive"): (150035, "MDC_PRESS_BLD_ART_MEAN", "1.6.1.3", 266016, "MDC_DIM_MMHG", 1),
    ("EtCO2", None): (151708, "MDC_AWAY_CO2_ET", "1.7.1.1", 266016, "MDC_DIM_MMHG", 1),
    ("FiO2", None): (152196, "MDC_CONC_AWAY_O2_INSP", "1.8.1.1", 262688, "MDC_DIM_PERCENT",
                     100),
    ("SaO2", None): (150324, "MDC_SAT_O2_ART", "1.9.1.1", 262688, "MDC_DIM_PERCENT", 1),
}


def _dtm(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"


def pid3_of(stay: Stay) -> str:
    """The MR number a replayed stay is sent under (a data-set id, never a real patient)."""
    return f"{stay.dataset}-{stay.source_id}"


def oru_r01(control_id: str, stay: Stay, rec: VitalsRecord, *, facility: str = "ICU",
            sent_at: datetime | None = None) -> tuple[bytes, int, int]:
    """One PCD-01 ORU^R01 for ``rec``; returns (message, OBX sent, observations not sent)."""
    sent_at = sent_at or datetime.now(UTC)
    at = _dtm(rec.event_time)
    birth = ""
    if stay.age_years is not None:
        birth = f"{rec.event_time.year - int(stay.age_years):04d}0101"
    sex = {"female": "F", "male": "M"}.get(stay.sex or "", "U")
    segs = [
        f"MSH|^~\\&|VIGIL-SENDER^0012345678ABCDEF^EUI-64|{facility}|VIGIL|VIGIL|{_dtm(sent_at)}"
        f"||ORU^R01^ORU_R01|{control_id}|P|2.6|||NE|AL||UNICODE UTF-8|||{PCD01_PROFILE}",
        f"PID|||{pid3_of(stay)}^^^{facility}^MR||^^^^^^U||{birth}|{sex}",
        f"PV1||I|{rec.unit or ''}^^{rec.bed or ''}",
        f"OBR|1|{control_id}^VIGIL-SENDER||182777000^monitoring of patient^SNOMEDCT|||{at}",
    ]
    n, skipped = 0, 0
    for o in rec.observations:
        spec = REVERSE_MDC.get((o.code, o.method)) or REVERSE_MDC.get((o.code, None))
        if spec is None:
            skipped += 1
            continue
        code, refid, where, ucode, uref, scale = spec
        n += 1
        value = o.value * scale
        segs.append(f"OBX|{n}|NM|{code}^{refid}^MDC|{where}|{value:g}|{ucode}^{uref}^MDC|||||R"
                    f"|||{at}")
    return ("\r".join(segs) + "\r").encode(), n, skipped


class MllpClient:
    """A blocking MLLP client: one message, one ACK, in order (HL7 original mode)."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        self.addr = (host, port)
        self.timeout_s = timeout_s
        self.sock: socket.socket | None = None
        self.buf = b""

    def connect(self) -> None:
        self.sock = socket.create_connection(self.addr, timeout=self.timeout_s)
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, message: bytes) -> bytes:
        """Send one framed message and return the ACK's payload."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.sendall(VT + message + FS + CR)
        while FS not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                self.close()
                raise ConnectionError("the listener closed the connection before its ACK")
            self.buf += chunk
        end = self.buf.index(FS)
        start = self.buf.find(VT)
        payload = self.buf[start + 1:end] if 0 <= start < end else self.buf[:end]
        self.buf = self.buf[end + 2:] if self.buf[end + 1:end + 2] == CR else self.buf[end + 1:]
        return payload


def ack_code(ack: bytes) -> str:
    for seg in ack.split(b"\r"):
        if seg.startswith(b"MSA|"):
            return seg.split(b"|")[1].decode("ascii", "replace")
    return "?"


@dataclass
class SendStats:
    patients: int = 0
    vitals: int = 0  # messages acknowledged AA or AE with a record produced
    labels: int = 0
    observations: int = 0  # OBX sent in those messages
    not_sent: int = 0  # observations without a monitor code (labs)
    resends: int = 0
    acks: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["messages_per_s"] = round(self.vitals / self.seconds, 1) if self.seconds else None
        return d


def send_stays(settings: VigilSettings, stays: list[Stay], *, host: str, port: int,
               speed: float = 0.0, labels: bool = False, stagger_hours: float = 24.0,
               stop: Callable[[], bool] | None = None,
               on_vitals: Callable[[int], None] | None = None,
               max_resends: int = 20) -> SendStats:
    """Send every charted time of ``stays`` as ORU^R01, in event-time order.

    ``speed`` is event-time seconds per wall second (0: as fast as the ACKs come back). A
    message answered AR is resent after a back-off (0.2 s doubling to 5 s), as a gateway
    queues and retries; AE means the listener used part of it and is not resent.
    """
    key = settings.pseudonym_key.get_secret_value()
    timeline = Timeline(stays, key, now_ms=int(time.time() * 1000), stagger_hours=stagger_hours)
    stats = SendStats(patients=len(stays))
    heap: list[tuple[int, int, int, VitalsRecord]] = []
    for i in range(len(stays)):
        for k, (t, rec) in enumerate(timeline.vitals_of(i)):
            heap.append((t, i, k, rec))
    heapq.heapify(heap)
    producer = None
    if labels:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                 linger_ms=5, client_id="vigil-hl7-send",
                                 **kafka_python_options(settings))
        pending = []
        for i, stay in enumerate(stays):
            patient = pseudonymize(pid3_of(stay), key, settings.gateway_patient_namespace)
            admit = timeline.admit_ms(i)
            for lb in stay.labels:
                pending.append((admit + int(round(lb.known_hours * 3_600_000)), LabelRecord(
                    patient=patient, kind=lb.kind,  # type: ignore[arg-type]
                    event_time=datetime.fromtimestamp(
                        (admit + int(round(lb.hours * 3_600_000))) / 1000, UTC),
                    label=lb.label,
                    known_time=datetime.fromtimestamp(
                        (admit + int(round(lb.known_hours * 3_600_000))) / 1000, UTC),
                    source="hl7-send")))
        pending.sort(key=lambda x: x[0])
    client = MllpClient(host, port)
    started = time.perf_counter()
    first_ms: int | None = None
    run = f"{int(time.time()) % 100000:05d}"
    li = 0
    try:
        while heap:
            if stop is not None and stop():
                break
            t, i, k, rec = heapq.heappop(heap)
            if speed > 0:
                first_ms = t if first_ms is None else first_ms
                delay = started + (t - first_ms) / 1000 / speed - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            if producer is not None:
                while li < len(pending) and pending[li][0] <= t:
                    rec_l = pending[li][1]
                    producer.send(settings.topic_labels, key=rec_l.patient.encode(),
                                  value=encode(rec_l))
                    stats.labels += 1
                    li += 1
            msg, n, skipped = oru_r01(f"{run}{i:05d}{k:05d}", stays[i], rec)
            stats.not_sent += skipped
            if n == 0:
                continue
            code, refused = _send_with_retry(client, msg, stats, max_resends)
            stats.acks[code] = stats.acks.get(code, 0) + 1
            if code in ("AA", "AE") and refused < n:  # a record was produced
                stats.vitals += 1
                stats.observations += n
                if on_vitals is not None:
                    on_vitals(stats.vitals)
        if producer is not None:
            for _, rec_l in pending[li:]:
                producer.send(settings.topic_labels, key=rec_l.patient.encode(),
                              value=encode(rec_l))
                stats.labels += 1
            producer.flush()
    finally:
        client.close()
        if producer is not None:
            producer.close()
    stats.seconds = time.perf_counter() - started
    return stats


def _send_with_retry(client: MllpClient, msg: bytes, stats: SendStats,
                     max_resends: int) -> tuple[str, int]:
    """The final ACK code and how many OBX it refused (ERR segments)."""
    backoff = 0.2
    code = "?"
    for attempt in range(max_resends + 1):
        try:
            ack = client.exchange(msg)
            code = ack_code(ack)
        except OSError:
            client.close()
            code, ack = "no-ack", b""
        if code in ("AA", "AE"):
            return code, sum(1 for seg in ack.split(b"\r") if seg.startswith(b"ERR|"))
        if attempt < max_resends:
            stats.resends += 1
            time.sleep(backoff)
            backoff = min(5.0, backoff * 2)
    return code, 0


def send_path(settings: VigilSettings, path: Path, *, host: str, port: int,
              limit: int | None = None, **kwargs) -> SendStats:  # type: ignore[no-untyped-def]
    stays = load_stays(Path(path), limit)
    if not stays:
        raise SystemExit(f"no PhysioNet 2019 (.psv) or 2012 (.txt) records found in {path}")
    return send_stays(settings, stays, host=host, port=port, **kwargs)
