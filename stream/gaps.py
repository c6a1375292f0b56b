"""Finds records that faust never delivered, and fetches them.

faust acknowledges some records without handing them to the agent: while a rebalance or
start-up has flow control paused, or when the message's generation is stale, its stream
iterator "skips" the record and acks it anyway, so the commit can move past a record no
agent ever processed. In tests here (a worker killed with SIGKILL, its successor starting)
one record in a few thousand vanished that way; faust's ``take_events`` lost more.

Vigil therefore keeps its own progress: for every vitals partition, the next offset it
expects, written to the patients changelog with each batch (key ``#progress/<partition>``,
a key no patient can have) and recovered with the table. A batch that starts beyond that
offset, or has a hole, is completed by fetching the missing records directly from the
broker before processing; each one is counted (``vigil_gap_records_total``) and logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from vigil.wire.consumed import InRecord

__all__ = ["GapFiller", "decode_progress", "encode_progress", "missing_offsets", "progress_key"]

log = logging.getLogger(__name__)


def progress_key(partition: int) -> bytes:
    return b"#progress/%d" % partition


def encode_progress(next_offset: int) -> bytes:
    return str(next_offset).encode()


def decode_progress(raw: bytes | None) -> int | None:
    return int(raw) if raw is not None else None


def missing_offsets(batch: list[InRecord], expected: dict[int, int | None]) -> dict[int, list[int]]:
    """Per partition, the offsets between the expected one and the batch's last that are absent.

    >>> r = lambda p, o: InRecord("t", p, o, b"k", b"{}", 0)
    >>> missing_offsets([r(0, 5), r(0, 7), r(1, 3)], {0: 4, 1: 3})
    {0: [4, 6]}
    """
    seen: dict[int, set[int]] = {}
    for rec in batch:
        seen.setdefault(rec.partition, set()).add(rec.offset)
    out: dict[int, list[int]] = {}
    for p, offsets in seen.items():
        start = expected.get(p)
        if start is None:
            start = min(offsets)
        holes = [o for o in range(start, max(offsets) + 1) if o not in offsets]
        if holes:
            out[p] = holes
    return out


class GapFiller:
    """Fetches given offsets of the vitals topic with a group-less consumer."""

    def __init__(self, bootstrap_servers: str, topic: str, *,
                 options: Mapping[str, Any] | None = None) -> None:
        """``options``: aiokafka's security options
        (:func:`vigil.kafka_config.aiokafka_options`); none for PLAINTEXT."""
        self.bootstrap_servers = bootstrap_servers
        self.options = dict(options or {})
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None

    async def _client(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers,
                                              enable_auto_commit=False, group_id=None,
                                              client_id="vigil-gap-filler",
                                              **self.options)
            await self._consumer.start()
        return self._consumer

    async def log_start(self, partition: int) -> int:
        """The partition's first offset still in the log: where a partition nobody has
        handled yet begins (0 on tansu, later where retention removed records)."""
        c = await self._client()
        tp = TopicPartition(self.topic, partition)
        return int((await c.beginning_offsets([tp]))[tp])

    async def fetch(self, partition: int, offsets: list[int], timeout_s: float = 30.0) -> list[InRecord]:
        c = await self._client()
        tp = TopicPartition(self.topic, partition)
        c.assign([tp])
        c.seek(tp, offsets[0])
        wanted = set(offsets)
        found: dict[int, InRecord] = {}
        deadline = time.monotonic() + timeout_s
        while wanted - found.keys() and time.monotonic() < deadline:
            batch = await c.getmany(tp, timeout_ms=500)
            for msg in batch.get(tp, []):
                if msg.offset in wanted:
                    found[msg.offset] = InRecord(self.topic, partition, msg.offset, msg.key,
                                                 msg.value, msg.timestamp)
                if msg.offset >= offsets[-1]:
                    break
            else:
                continue
            break
        lost = sorted(wanted - found.keys())
        if lost:
            raise RuntimeError(f"{self.topic}[{partition}]: offsets {lost[:10]} were not "
                               "delivered by faust and cannot be fetched from the broker")
        return [found[o] for o in offsets]

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
