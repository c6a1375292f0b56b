"""Start-up checks for broker behaviour that would otherwise corrupt state silently.

tansu 0.6 answers ListOffsets("latest") with the base offset of the last record *batch*
plus one, not the true log end (Fetch reports the right high watermark). faust ends table
recovery at that number, so a restarted worker would recover a changelog short by a few
records, i.e. with stale patient state. Three defences:

* Vigil writes the changelog itself so that every write ends with a one-record batch
  (:meth:`vigil.stream.publisher.OutputPublisher.publish_changelog`): "latest" stays exact;
* :func:`changelog_gaps` compares, for each changelog partition, the broker's "latest" with
  what a fetch actually finds, at every worker start;
* :func:`repair_changelog_ends` closes a gap (left by a crash between two writes, or by
  another writer) by appending a marker record as a one-record batch, under a key no reader
  uses, so the table's content is unchanged, and "latest" is exact again.
  If that does not close the gap, the worker refuses to start and says why.

:func:`list_offsets_exact` probes the broker once so that the worker can report which kind
of broker it runs on.

Each takes kafka-python's security options (``options``, from
:func:`vigil.kafka_config.kafka_python_options`): the checks must reach the broker the way
the worker does, over TLS/SASL where it is configured.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["END_MARKER_PREFIX", "OffsetGap", "changelog_gaps", "list_offsets_exact",
           "repair_changelog_ends"]

#: the key of a repair's marker record (a ``#`` key: no pseudonym has one, see stream.tables)
END_MARKER_PREFIX = b"#end/"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OffsetGap:
    topic: str
    partition: int
    reported_end: int
    true_end: int

    def __str__(self) -> str:
        return (f"{self.topic}[{self.partition}]: broker reports end offset {self.reported_end} "
                f"but holds records up to {self.true_end}")


def list_offsets_exact(bootstrap: str, *, options: Mapping[str, Any] | None = None) -> bool:
    """True when ListOffsets("latest") equals the log end after a multi-record batch."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    opts = dict(options or {})
    topic = f"vigil.probe.{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="vigil-probe", **opts)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=200, acks="all",
                                 **opts)
        for i in range(3):  # lingering: the three records travel as one batch
            producer.send(topic, value=b"probe %d" % i, partition=0)
        producer.flush()
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="vigil-probe", **opts)
        tp = TopicPartition(topic, 0)
        end = consumer.end_offsets([tp])[tp]
        consumer.close()
        exact = end == 3
        if not exact:
            log.warning("broker at %s reports end offset %d after one batch of 3 records: "
                        "its ListOffsets is off by a batch (tansu); Vigil ends every changelog "
                        "write with a one-record batch and checks changelogs at start-up",
                        bootstrap, end)
        return exact
    finally:
        try:
            admin.delete_topics([topic])
        except Exception:  # pragma: no cover - best effort; tansu keeps it in memory only
            pass
        admin.close()


def changelog_gaps(bootstrap: str, topics: list[str], timeout_ms: int = 1500, *,
                   options: Mapping[str, Any] | None = None) -> list[OffsetGap]:
    """Changelog partitions whose real end lies beyond what the broker reports."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="vigil-changelog-check",
                             enable_auto_commit=False, group_id=None, **(options or {}))
    try:
        existing = consumer.topics()
        tps = [TopicPartition(t, p) for t in topics if t in existing
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return []
        reported = consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, reported[tp])
        beyond: dict[TopicPartition, int] = {}
        records = consumer.poll(timeout_ms=timeout_ms)
        for tp, recs in records.items():
            if recs:
                beyond[tp] = recs[-1].offset + 1
        gaps = []
        for tp in tps:
            hw = consumer.highwater(tp)
            true_end = max(beyond.get(tp, reported[tp]), hw if hw is not None else -1)
            if true_end > reported[tp]:
                gaps.append(OffsetGap(tp.topic, tp.partition, reported[tp], true_end))
        return gaps
    finally:
        consumer.close()


def repair_changelog_ends(bootstrap: str, gaps: list[OffsetGap], *,
                          options: Mapping[str, Any] | None = None) -> None:
    """Append a marker record to each gap's partition, alone in its batch.

    The marker's key (``#end/<partition>``) is one no reader uses, so the table's content
    stays as it was. A copy of the last record would do the same only until a peer wrote
    that key again between the read and the append: the copy would then revert it."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                             client_id="vigil-changelog-repair", **dict(options or {}))
    try:
        for gap in gaps:
            producer.send(gap.topic, key=END_MARKER_PREFIX + b"%d" % gap.partition,
                          value=b"end repaired", partition=gap.partition)
            producer.flush()  # alone in its request, hence alone in its batch
            log.warning("repaired %s by appending an end marker as a one-record batch", gap)
    finally:
        producer.close()
