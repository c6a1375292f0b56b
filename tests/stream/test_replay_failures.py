"""A replay reports what the broker acknowledged, and fails loudly when the broker goes away.

Before issue 13, ``vigil replay`` counted records as they were handed to the client: with the
broker gone it logged hundreds of "Aborting producer batches" errors, printed full counts and
exited 0 over an empty topic. These tests run on real tansu brokers: the session's for the
successful replays, one of their own for the one they kill.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vigil.broker import EmbeddedBroker, free_port
from vigil.cli import app
from vigil.sample import sample_path
from vigil.settings import VigilSettings
from vigil.stream.replay import replayer
from vigil.stream.replay.replayer import ReplayError, replay_timeline
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.topics import ensure_topics

pytestmark = pytest.mark.broker

ACK_TIMEOUT_S = 2.0  # short, so a dead broker is declared dead quickly in these tests
KILL_AFTER = 40  # records handed to the producer before the broker is killed


def _timeline(n2019: int = 3, n2012: int = 1) -> Timeline:
    stays = (load_stays(sample_path("physionet2019"), n2019)
             + load_stays(sample_path("physionet2012"), n2012))
    return Timeline(stays, "test-key", now_ms=int(time.time() * 1000))


def _settings_on(port: int, tmp_path: Path) -> VigilSettings:
    tag = uuid.uuid4().hex[:8]
    return VigilSettings(embedded_broker_port=port, app_id=f"vigil-{tag}",
                         topic_vitals=f"r{tag}.vitals", topic_labels=f"r{tag}.labels",
                         topic_scores=f"r{tag}.scores", topic_alerts=f"r{tag}.alerts",
                         topic_dlq=f"r{tag}.dlq", topic_acks=f"r{tag}.acks", partitions=3,
                         data_dir=str(tmp_path / "state"))


def _env(s: VigilSettings) -> dict[str, str]:
    names = ("embedded_broker_port", "app_id", "topic_vitals", "topic_labels", "topic_scores",
             "topic_alerts", "topic_dlq", "topic_acks", "partitions", "data_dir")
    return {f"VIGIL_{n.upper()}": str(getattr(s, n)) for n in names}


def _end_offsets(s: VigilSettings, topic: str) -> int:
    """How many records ``topic`` holds (nothing is compacted or deleted in a test)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap_servers, client_id="vigil-test",
                             enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def _values(s: VigilSettings, topic: str, timeout_s: float = 30.0) -> list[bytes]:
    """Every value on ``topic``, read from the beginning until its end offsets."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap_servers, client_id="vigil-test",
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, f"{topic}: read {len(out)} of {sum(end.values())}"
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(r.value for r in batch)
        return out
    finally:
        consumer.close()


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _assert_on_topics(s: VigilSettings, timeline: Timeline, vitals: int, labels: int) -> None:
    """The reported counts are exactly what the topics hold, record for record."""
    sent = Counter((r.topic, r.value) for r in timeline)
    on_vitals = Counter(("vitals", v) for v in _values(s, s.topic_vitals))
    on_labels = Counter(("labels", v) for v in _values(s, s.topic_labels))
    assert (vitals, labels) == (timeline.n_vitals, timeline.n_labels)
    assert sum(on_vitals.values()) == vitals and sum(on_labels.values()) == labels
    assert on_vitals + on_labels == sent  # the same records, none twice


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, so that the test may kill it."""
    with EmbeddedBroker(free_port(), log_path=tmp_path / "tansu.log") as b:
        yield b


@pytest.fixture(autouse=True)
def _kafka_log_level() -> Iterator[None]:
    """``vigil replay`` quiets kafka-python's logger; give it back to the other tests."""
    logger = logging.getLogger("kafka")
    level = logger.level
    yield
    logger.setLevel(level)


def _killer(broker: EmbeddedBroker, s: VigilSettings) -> Callable[[], bool]:
    """A replay ``stop`` hook that kills the broker once ``KILL_AFTER`` records were handed
    over and the broker has acknowledged some of them, and never stops the replay itself."""
    calls = [0]

    def stop() -> bool:
        calls[0] += 1
        if calls[0] == KILL_AFTER:
            _wait_for(lambda: _end_offsets(s, s.topic_vitals) > 0, "a first record on the topic")
            broker.stop()
        return False

    return stop


# --- success: exact counts ---------------------------------------------------------------

def test_a_replay_reports_exactly_what_the_topics_hold(broker_settings: VigilSettings) -> None:
    ensure_topics(broker_settings)
    timeline = _timeline()
    stats = replay_timeline(broker_settings, timeline, progress=False)
    assert stats.observations == sum(r.value.count(b'"code"') for r in timeline
                                     if r.topic == "vitals")
    _assert_on_topics(broker_settings, timeline, stats.vitals, stats.labels)


def test_vigil_replay_prints_the_counts_on_the_topics(broker_settings: VigilSettings) -> None:
    result = CliRunner().invoke(app, ["replay", "--speed", "0", "--patients", "2",
                                      "--no-progress", str(sample_path("physionet2019"))],
                                env=_env(broker_settings))
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    stays = load_stays(sample_path("physionet2019"), 2)
    assert stats["vitals"] == sum(len(s.measurements) for s in stays)
    assert stats["vitals"] == len(_values(broker_settings, broker_settings.topic_vitals))
    assert stats["labels"] == len(_values(broker_settings, broker_settings.topic_labels))


# --- failure: an error naming what was not delivered --------------------------------------

def test_a_replay_to_a_port_nobody_listens_on_fails(tmp_path: Path) -> None:
    s = _settings_on(free_port(), tmp_path)
    timeline = _timeline(2, 0)
    total = timeline.n_vitals + timeline.n_labels
    with pytest.raises(ReplayError) as err:
        replay_timeline(s, timeline, progress=False, ack_timeout_s=ACK_TIMEOUT_S)
    assert err.value.undelivered == total and err.value.stats.vitals == 0
    assert f"{total} of {total} records were not delivered to {s.bootstrap_servers}" in str(
        err.value)


def test_a_broker_killed_mid_replay_fails_the_replay(own_broker: EmbeddedBroker,
                                                      tmp_path: Path) -> None:
    s = _settings_on(own_broker.port, tmp_path)
    ensure_topics(s)
    timeline = _timeline()
    total = timeline.n_vitals + timeline.n_labels
    assert total > 2 * KILL_AFTER
    with pytest.raises(ReplayError) as err:
        replay_timeline(s, timeline, progress=False, ack_timeout_s=ACK_TIMEOUT_S,
                        stop=_killer(own_broker, s))
    e = err.value
    delivered = e.stats.vitals + e.stats.labels
    assert 1 <= e.stats.vitals and delivered < KILL_AFTER  # only what came before the kill
    assert e.undelivered == total - delivered >= total - KILL_AFTER
    assert str(e).startswith(f"{e.undelivered} of {total} records were not delivered")
    assert "\n" not in str(e)


def test_vigil_replay_exits_non_zero_naming_the_undelivered(
        own_broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings_on(own_broker.port, tmp_path)
    monkeypatch.setattr(replayer, "ACK_TIMEOUT_S", ACK_TIMEOUT_S)
    monkeypatch.setattr(replayer, "replay_timeline", functools.partial(
        replayer.replay_timeline, stop=_killer(own_broker, s)))
    result = CliRunner().invoke(app, ["replay", "--speed", "0", "--patients", "4",
                                      "--no-progress", str(sample_path("physionet2019"))],
                                env=_env(s))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""  # no counts that could be mistaken for a success
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vigil replay: ")
    assert " records were not delivered to " in lines[0]
    undelivered, total = (int(w) for w in lines[0].split(": ", 1)[1].split()[:3:2])
    assert 0 < total - KILL_AFTER <= undelivered <= total
