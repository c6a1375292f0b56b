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
from collections.abc import Callable
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

    def add(self, offset: int, known_ms: int, raw: bytes) -> bool:
        """Queue the label at labels ``offset``; False if it was queued before."""
        if offset < self.next_offset:
            return False
        self.items.append(Queued(self.next_seq, known_ms, raw))
        self.next_seq += 1
        self.next_offset = offset + 1
        return True

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


@dataclass
class LabelClocks:
    """What the vitals handler needs to know of the labels agent, per partition.

    ``highwater(p)``: the labels partition's end as the consumer last fetched it (None
    before the first fetch); ``committed(p)``: the labels consumer's committed offset (where
    this worker started reading). Both come from the engine (faust); the handler keeps the
    rest.
    """

    highwater: Callable[[int], int | None] = lambda p: None
    committed: Callable[[int], int | None] = lambda p: None
    read_to: dict[int, int] = field(default_factory=dict)  # next labels offset handled
    known_to: dict[int, int] = field(default_factory=dict)  # latest known time queued
    vitals_at: dict[int, float] = field(default_factory=dict)  # monotonic time of last batch
    started: float = field(default_factory=time.monotonic)

    def labels_read(self, partition: int, next_offset: int, known_ms: int | None) -> None:
        self.read_to[partition] = max(self.read_to.get(partition, 0), next_offset)
        if known_ms is not None:
            self.known_to[partition] = max(self.known_to.get(partition, known_ms), known_ms)

    def caught_up(self, partition: int, event_ms: int) -> bool:
        """Whether every label due before a vitals record at ``event_ms`` has been queued:
        the labels partition is read to its end, or past that record's hour."""
        boundary = event_ms - event_ms % HOUR_MS
        if self.known_to.get(partition, -1) >= boundary:
            return True
        end = self.highwater(partition)
        if end is None:
            return False
        done = max(self.read_to.get(partition, 0), self.committed(partition) or 0)
        return done >= end

    def vitals_seen(self, partition: int) -> None:
        self.vitals_at[partition] = time.monotonic()

    def idle_for(self, partition: int) -> float:
        """Seconds since this worker last processed vitals of ``partition`` (or started)."""
        return time.monotonic() - self.vitals_at.get(partition, self.started)
