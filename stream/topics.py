"""Vigil's topics, their partitioning, and creating them on the broker.

``vigil.vitals`` and ``vigil.acks`` are keyed by patient and co-partitioned with the patients
table's changelog: a patient's records, acks and state live in one partition, hence one
worker. A mismatch in partition counts would split a patient's state, so it stops start-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from vigil.kafka_config import kafka_python_options
from vigil.settings import VigilSettings

__all__ = ["InputTopics", "TopicSpec", "declare_inputs", "topic_specs", "ensure_topics",
           "TopicMismatch", "changelog_topic"]

log = logging.getLogger(__name__)


class TopicMismatch(RuntimeError):
    """An existing topic's partitioning would break per-patient state."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    copartitioned: bool  # must have exactly ``partitions`` partitions


@dataclass(frozen=True)
class InputTopics:
    """The faust topics the agents consume; raw bytes, decoded by the processor."""

    vitals: Any
    labels: Any
    acks: Any


def declare_inputs(app: Any, settings: VigilSettings) -> InputTopics:
    """The worker's input topics on ``app`` (a faust App), co-partitioned by patient."""
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw", "partitions": settings.partitions}
    return InputTopics(app.topic(settings.topic_vitals, **raw),
                       app.topic(settings.topic_labels, **raw),
                       app.topic(settings.topic_acks, **raw))


def changelog_topic(settings: VigilSettings, table: str = "patients") -> str:
    return f"{settings.app_id}-{table}-changelog"


def topic_specs(settings: VigilSettings) -> list[TopicSpec]:
    n = settings.partitions
    return [
        TopicSpec(settings.topic_vitals, n, True),
        TopicSpec(settings.topic_acks, n, True),
        TopicSpec(settings.topic_labels, n, True),
        TopicSpec(settings.topic_scores, n, False),
        TopicSpec(settings.topic_alerts, n, False),
        TopicSpec(settings.topic_dlq, n, False),
    ]


def ensure_topics(settings: VigilSettings, *, replication_factor: int = 1) -> list[str]:
    """Create missing topics; refuse co-partitioned topics with the wrong partition count."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                             client_id="vigil-topics", request_timeout_ms=10_000,
                             **kafka_python_options(settings))
    try:
        existing = set(admin.list_topics())
        specs = topic_specs(settings)
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        if missing:
            try:
                admin.create_topics([NewTopic(s.name, s.partitions, replication_factor)
                                     for s in missing])
                created = [s.name for s in missing]
            except TopicAlreadyExistsError:  # a concurrent worker won the race
                pass
        present = [s for s in specs if s.name in existing]
        if present:
            meta = admin.describe_topics([s.name for s in present])
            counts = {m.get("name", m.get("topic")): len(m["partitions"]) for m in meta}
            for s in present:
                if s.copartitioned and counts.get(s.name) != s.partitions:
                    raise TopicMismatch(
                        f"topic {s.name} has {counts.get(s.name)} partitions but VIGIL_PARTITIONS "
                        f"is {s.partitions}: a patient's records and state would land on "
                        "different partitions. Use the same partition count everywhere.")
        if created:
            log.info("created topics %s", ", ".join(created))
        return created
    finally:
        admin.close()
