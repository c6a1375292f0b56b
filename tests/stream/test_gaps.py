"""Finding and fetching records faust never delivered."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from vigil.stream.gaps import (
    GapFiller,
    decode_progress,
    encode_progress,
    missing_offsets,
    progress_key,
)
from vigil.stream.processor import InRecord


def r(p: int, o: int) -> InRecord:
    return InRecord("t", p, o, b"k", b"{}", 0)


def test_no_hole_when_the_batch_continues_the_progress() -> None:
    assert missing_offsets([r(0, 5), r(0, 6), r(1, 0)], {0: 5, 1: 0}) == {}


def test_a_batch_starting_beyond_the_progress_has_a_hole() -> None:
    assert missing_offsets([r(0, 8), r(0, 9)], {0: 5}) == {0: [5, 6, 7]}


def test_holes_inside_a_batch_are_found_without_progress() -> None:
    assert missing_offsets([r(2, 10), r(2, 13)], {2: None}) == {2: [11, 12]}


def test_redelivered_records_are_not_holes() -> None:
    # faust restarted below our progress: records 3..9 are redeliveries, not a gap
    assert missing_offsets([r(0, 3), r(0, 4)], {0: 10}) == {}


def test_progress_round_trip_and_keys_no_patient_can_have() -> None:
    assert decode_progress(encode_progress(1234)) == 1234 and decode_progress(None) is None
    assert progress_key(3) == b"#progress/3"
    import msgspec

    from vigil.wire.records import VITALS_DECODER

    with pytest.raises(msgspec.ValidationError):  # "#" is not allowed in a patient key
        VITALS_DECODER.decode(b'{"patient": "#progress/3", "event_time": '
                              b'"2026-01-01T00:00:00Z", "observations": [{"code": "HR", "value": 1}]}')


@pytest.mark.broker
def test_gap_filler_fetches_exactly_the_missing_offsets(broker) -> None:
    topic = f"gaps-{uuid.uuid4().hex[:6]}"
    KafkaAdminClient(bootstrap_servers=broker.bootstrap).create_topics([NewTopic(topic, 2, 1)])
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
    for i in range(12):
        p.send(topic, key=b"pt-%d" % i, value=b"v%d" % i, partition=1)
    p.flush()
    p.close()

    async def go():
        f = GapFiller(broker.bootstrap, topic)
        try:
            assert await f.log_start(1) == 0 and await f.log_start(0) == 0
            got = await f.fetch(1, [3, 4, 9])
            with pytest.raises(RuntimeError, match="cannot be fetched"):
                await f.fetch(1, [40], timeout_s=1.0)
            return got
        finally:
            await f.stop()

    got = asyncio.run(go())
    assert [(g.partition, g.offset, g.value) for g in got] == [
        (1, 3, b"v3"), (1, 4, b"v4"), (1, 9, b"v9")]
