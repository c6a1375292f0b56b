"""The agents' handlers without faust or a broker: an in-memory table and publisher.

The end-to-end tests run the same handlers on the real broker; these pin each named step.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from vigil.models.clinical import News2Scorer, QsofaScorer
from vigil.settings import VigilSettings
from vigil.stream.gaps import decode_progress, progress_key
from vigil.stream.handlers import AcksHandler, LabelsHandler, Sweeper, VitalsHandler
from vigil.stream.processor import Processor
from vigil.stream.tables import PatientStore
from vigil.wire.consumed import InRecord
from vigil.wire.records import DLQ_DECODER

from .helpers import HOUR, T0


class _Table:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


class _Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.changelog: list[tuple[int, bytes, bytes | None]] = []

    async def publish(self, records) -> None:  # type: ignore[no-untyped-def]
        self.sent.extend(records)

    async def publish_changelog(self, topic, changes) -> None:  # type: ignore[no-untyped-def]
        self.changelog.extend((p, k, v) for p, recs in changes.items() for k, v in recs)


class _Metrics:
    """Accepts any metric call: the handlers' metrics have their own tests (tests/ops)."""

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return self

    def __call__(self, *a, **k):  # type: ignore[no-untyped-def]
        return self


def _setup(features, windows):  # type: ignore[no-untyped-def]
    settings = VigilSettings()
    proc = Processor(windows, [QsofaScorer(features.names), News2Scorer(features.names)])
    pub = _Publisher()
    store = PatientStore(_Table(), pub, "changelog")  # type: ignore[arg-type]
    return settings, proc, pub, store


def _vitals(offset: int, hour: int, **obs: float) -> InRecord:
    t = datetime.fromtimestamp((T0 + hour * HOUR) / 1000, tz=UTC).isoformat()
    value = json.dumps({"patient": "pt-1", "event_time": t, "event_id": str(hour),
                        "observations": [{"code": c, "value": v} for c, v in obs.items()]})
    return InRecord("vigil.vitals", 0, offset, b"pt-1", value.encode(), T0 + hour * HOUR)


def test_a_vitals_batch_publishes_then_stores_state_and_progress(features, windows) -> None:
    settings, proc, pub, store = _setup(features, windows)
    h = VitalsHandler(settings, proc, store, pub, None, _Metrics(), None)  # type: ignore[arg-type]
    batch = [_vitals(0, 0, HR=80), _vitals(1, 1, HR=130, RR=30, SBP=85)]
    assert h.expected_offsets(batch) == {0: None}
    asyncio.run(h.handle(batch))
    assert [t for t, _, _ in pub.sent].count(settings.topic_scores) == 2
    assert decode_progress(store.get(progress_key(0))) == 2  # the next offset expected
    assert store.state("pt-1").offset == 1
    # the progress entry is the partition's last changelog record of the batch
    assert pub.changelog[-1][1] == progress_key(0)


def test_unreadable_labels_and_tombstones_are_dead_lettered(features, windows) -> None:
    settings, proc, pub, store = _setup(features, windows)
    h = LabelsHandler(settings, proc, store, pub, _Metrics())  # type: ignore[arg-type]
    batch = [InRecord("vigil.labels", 0, 0, b"pt-1", None, 0),
             InRecord("vigil.labels", 0, 1, b"pt-1", b"{not json", 0),
             InRecord("vigil.labels", 0, 2, b"pt-1", b'{"patient": "pt-1"}', 0)]
    asyncio.run(h.handle(batch))
    reasons = [DLQ_DECODER.decode(v).reason for t, _, v in pub.sent if t == settings.topic_dlq]
    assert reasons == ["malformed_json", "malformed_json", "schema"]


def test_an_ack_tombstone_is_a_counted_rejection_not_a_crash(features, windows) -> None:
    settings, proc, pub, store = _setup(features, windows)
    h = AcksHandler(settings, proc, store, pub, _Metrics())  # type: ignore[arg-type]
    asyncio.run(h.handle([InRecord("vigil.acks", 0, 5, b"pt-1", None, 0)]))
    (topic, _, value), = pub.sent
    assert topic == settings.topic_dlq and DLQ_DECODER.decode(value).dlq_id == "vigil.acks:0:5"


def test_the_sweep_removes_idle_patients_of_owned_partitions_only(features, windows) -> None:
    settings, proc, pub, store = _setup(features, windows)
    asyncio.run(VitalsHandler(settings, proc, store, pub, None, _Metrics(),  # type: ignore[arg-type]
                              None).handle([_vitals(0, 0, HR=80)]))
    later = store.state("pt-1").processed_at_ms + settings.patient_ttl_s * 1000
    sweeper = Sweeper(settings, proc, store, pub, _Metrics())  # type: ignore[arg-type]
    asyncio.run(sweeper.sweep({1}, later))
    assert store.state("pt-1") is not None  # partition 0 is not this worker's
    asyncio.run(sweeper.sweep({0}, later))
    assert store.state("pt-1") is None and pub.changelog[-1] == (0, b"pt-1", None)
