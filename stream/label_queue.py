"""Outcome labels wait in their partition's queue until that partition's vitals reach them.

Why: an online model that learns a label the moment the labels agent reads it learns at a
point that depends on how two topics happen to interleave, on batch sizes, worker count and
crashes; two runs of byte-identical input then gave different alerts. Kafka Streams meets the
same problem by processing its input partitions in timestamp order and waiting a bounded time
for an input that is behind (``max.task.idle.ms``). Vigil does the same for labels:

* the labels agent only *queues* a label, in the changelogged table entry of its partition
  (labels are co-partitioned with vitals: same key, same partition number);
* the vitals handler learns a queued label just before the first vitals record of the
  partition whose event time is in a later hour than the label's known time. The hour
  boundary keeps score batches whole (an exact per-record point would cut them at nearly
  every record, since PhysioNet labels come hourly);
* before a vitals batch, the handler waits (``VIGIL_LABEL_IDLE_S``) until the labels
  partition has been read to its end or past the batch's hour: what is learned before each
  record then depends only on what the two partitions hold;
* a partition whose vitals went quiet (a live feed at night, the end of a replay) learns its
  due labels by the wall clock in the sweep, and that one case depends on timing, as Kafka
  Streams' punctuations do; it is counted (``vigil_labels_applied_total{by="idle"}``).

The queue is learned head first, in arrival order: a label not yet due holds back the later
ones, so the queue's cursor is one number per partition. The learned models and the shortened
queue are stored in the same changelog write as the batch's states, ahead of them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import msgspec
from msgspec import Struct

from vigil.wire.durations import HOUR_MS

__all__ = ["Queued", "LabelQueue", "queue_key", "decode_queue", "encode_queue", "LabelClocks",
           "QUEUE_PREFIX"]

QUEUE_PREFIX = b"#labels/"  # a table key no pseudonym can have (see vigil.stream.tables)


class Queued(Struct, array_like=True, frozen=True):
    """One queued label: its arrival number, known time and the record's bytes."""

    seq: int
    known_ms: int
    raw: bytes


class LabelQueue(Struct, array_like=True):
    """A partition's labels not learned yet, in arrival order, and the next labels offset
    it expects (the redelivery guard: after a crash or a partition move, faust re-delivers
    labels read but not committed, and learning one twice would change what the models
    know)."""

    next_seq: int = 0
    items: list[Queued] = []
    next_offset: int = 0

    def add(self, offset: int, known_ms: int, raw: bytes) -> None:
        """Queue the label read at labels ``offset`` (the caller skips offsets below
        ``next_offset``: handled before)."""
        self.items.append(Queued(self.next_seq, known_ms, raw))
        self.next_seq += 1
        self.next_offset = max(self.next_offset, offset + 1)

    def due_before(self, event_ms: int) -> int:
        """How many head labels are due before a vitals record at ``event_ms``: those known
        in an hour before the record's hour."""
        boundary = event_ms - event_ms % HOUR_MS
        n = 0
        for q in self.items:
            if q.known_ms >= boundary:
                break
            n += 1
        return n

    def due_by(self, now_ms: int) -> int:
        """How many head labels are known by the wall clock ``now_ms`` (idle partitions)."""
        n = 0
        for q in self.items:
            if q.known_ms > now_ms:
                break
            n += 1
        return n

    def take(self, n: int) -> list[Queued]:
        head, self.items = self.items[:n], self.items[n:]
        return head


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(LabelQueue)


def queue_key(partition: int) -> bytes:
    return b"%s%d" % (QUEUE_PREFIX, partition)


def encode_queue(q: LabelQueue) -> bytes:
    return _ENC.encode(q)


def decode_queue(raw: bytes | None) -> LabelQueue:
    return LabelQueue() if raw is None else _DEC.decode(raw)


async def _unknown(positions: Mapping[int, int]) -> dict[int, int]:
    return {}


@dataclass
class LabelClocks:
    """What the vitals handler needs to know of the labels agent, per partition.

    From the engine: ``ends(positions)``, the labels partitions' exact ends now
    (:class:`vigil.stream.log_ends.LogEnds`; empty: unknown), ``committed(p)``, the labels
    consumer's committed offset (where this worker started reading), and
    ``vitals_highwater(p)``. The handlers keep the rest.
    """

    ends: Callable[[Mapping[int, int]], Awaitable[dict[int, int]]] = _unknown
    committed: Callable[[int], int | None] = lambda p: None
    vitals_highwater: Callable[[int], int | None] = lambda p: None
    read_to: dict[int, int] = field(default_factory=dict)  # next labels offset handled
    known_to: dict[int, int] = field(default_factory=dict)  # latest known time queued
    vitals_at: dict[int, float] = field(default_factory=dict)  # monotonic time of last batch

    def labels_read(self, partition: int, next_offset: int, known_ms: int | None) -> None:
        self.read_to[partition] = max(self.read_to.get(partition, 0), next_offset)
        if known_ms is not None:
            self.known_to[partition] = max(self.known_to.get(partition, known_ms), known_ms)

    def position(self, partition: int) -> int:
        """The next labels offset this worker will queue (at least the committed one)."""
        return max(self.read_to.get(partition, 0), self.committed(partition) or 0)

    def known_past(self, partition: int, event_ms: int) -> bool:
        """A label known in a vitals record's hour or later has been queued: every label due
        before the record was queued before it (a labels partition is in known-time order)."""
        return self.known_to.get(partition, -1) >= event_ms - event_ms % HOUR_MS

    def vitals_seen(self, partition: int) -> None:
        self.vitals_at[partition] = time.monotonic()

    def idle_for(self, partition: int, next_vitals_offset: int | None) -> float:
        """Seconds the vitals of ``partition`` have been quiet here: every record up to the
        partition's end processed (``next_vitals_offset``, the next one to process, has
        reached it), and none for that long; inf when caught up and none processed here
        since start (a partition that moved here with nothing waiting). Unknown end, or
        records waiting: 0."""
        now = time.monotonic()
        end = self.vitals_highwater(partition)
        if end is None or (next_vitals_offset or 0) < end:
            self.vitals_at[partition] = now  # records wait (or cannot tell): busy
            return 0.0
        at = self.vitals_at.get(partition)
        return float("inf") if at is None else now - at
