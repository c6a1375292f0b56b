"""Produces a :class:`~vigil.stream.replay.timeline.Timeline` to Kafka at a chosen speed.

A replay reports only what the broker acknowledged: each record's delivery future is
followed, and a replay the broker stops acknowledging fails with :class:`ReplayError`
instead of printing the counts it meant to send.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kafka.errors import KafkaError

from vigil.kafka_config import kafka_python_options
from vigil.progress import ProgressBar
from vigil.settings import VigilSettings
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.stays import Stay
from vigil.stream.replay.timeline import Timeline

__all__ = ["ACK_TIMEOUT_S", "MAX_UNACKNOWLEDGED", "ReplayError", "ReplayStats", "replay_path",
           "replay_stays", "replay_timeline"]

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 30.0
"""How long a replay waits for the broker to acknowledge anything before it gives up.

Long enough to ride out a leader election or a broker restart that keeps its data (the
client retries throughout), short enough that an operator replaying into a broker that is
gone learns it in half a minute instead of reading "done" over an empty topic.
"""

MAX_UNACKNOWLEDGED = 10_000
"""Records a replay hands to the client before waiting for acknowledgements.

kafka-python's buffer is unbounded: at speed 0 a large replay would queue everything in
memory at once, and batches that wait in that queue longer than the delivery timeout fail
although the broker is healthy, only slow to drain it. Bounding what is in flight keeps the
timeout a measure of the broker's silence, and memory flat (~5 MB of vitals records).
"""


@dataclass
class ReplayStats:
    """What a replay delivered: ``vitals``, ``labels`` and ``observations`` count records the
    broker acknowledged."""

    patients: int = 0
    septic_patients: int = 0
    vitals: int = 0
    labels: int = 0
    observations: int = 0
    unmapped_values: int = 0
    seconds: float = 0.0
    datasets: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["records_per_s"] = round(self.vitals / self.seconds, 1) if self.seconds else None
        return d


def replay_stays(settings: VigilSettings, stays: list[Stay], *, stagger_hours: float = 24.0,
                 **kwargs) -> ReplayStats:
    timeline = Timeline(stays, settings.pseudonym_key.get_secret_value(),
                        now_ms=int(time.time() * 1000), stagger_hours=stagger_hours)
    return replay_timeline(settings, timeline, **kwargs)


def replay_timeline(settings: VigilSettings, timeline: Timeline, *, speed: float = 0.0,
                    progress: bool = True, include_labels: bool = True,
                    stop: Callable[[], bool] | None = None,
                    on_vitals: Callable[[int], None] | None = None,
                    ack_timeout_s: float | None = None) -> ReplayStats:
    """Send every record of ``timeline`` in event-time order; ``speed`` 0 means no pacing.

    Each record is keyed by the patient's pseudonym, so all of a patient's records share a
    partition and arrive in order. The counts returned are those the broker acknowledged
    (``acks=all``), not those handed to the client: a producer that buffers into a dead
    broker has sent nothing. If no acknowledgement comes for ``ack_timeout_s`` (default
    :data:`ACK_TIMEOUT_S`) while records wait for one, or the client reports a record as
    failed, the replay stops and raises :class:`ReplayError` naming how many records were
    not delivered. ``on_vitals`` gets the acknowledged vitals count as it grows.
    """
    timeout_s = ACK_TIMEOUT_S if ack_timeout_s is None else ack_timeout_s
    stays = timeline.stays
    stats = ReplayStats(patients=len(stays), septic_patients=sum(s.septic for s in stays),
                        unmapped_values=sum(s.unmapped for s in stays))
    for s in stays:
        stats.datasets[s.dataset] = stats.datasets.get(s.dataset, 0) + 1
    total = timeline.n_vitals + (timeline.n_labels if include_labels else 0)
    started = time.perf_counter()
    acks = _Acks(timeout_s)
    try:
        producer = _producer(settings, timeout_s)
    except KafkaError as exc:
        raise ReplayError(stats, total, settings.bootstrap_servers,
                          f"no broker answered within {timeout_s:g} s ({_why(exc)})") from exc
    bar = ProgressBar("replay", total, enabled=progress)
    failure: BaseException | None = None
    try:
        _send_all(producer, timeline, acks, settings, speed=speed,
                  include_labels=include_labels, stop=stop, on_vitals=on_vitals, bar=bar)
        acks.wait_all()
    except (Undelivered, KafkaError) as exc:
        failure = exc
    finally:
        _close(producer, acks, failed=failure is not None)
        acks.fill(stats)
        bar.update(completed=stats.vitals + stats.labels)
        bar.stop()
    stats.seconds = time.perf_counter() - started
    if failure is not None:
        raise ReplayError(stats, total, settings.bootstrap_servers, _why(failure)) from failure
    return stats


def _producer(settings: VigilSettings, timeout_s: float):  # type: ignore[no-untyped-def]
    """A producer whose every wait is bounded by ``timeout_s``.

    kafka-python's defaults wait 30 s to bootstrap, block ``send`` up to 60 s and retry a
    batch for 120 s: with them a replay into a dead broker looks busy for minutes and then,
    as the client only logs what it drops, "succeeds".
    """
    from kafka import KafkaProducer

    ms = max(1000, int(timeout_s * 1000))
    return KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                         linger_ms=5, client_id="vigil-replay", bootstrap_timeout_ms=ms,
                         max_block_ms=ms, request_timeout_ms=ms // 2, delivery_timeout_ms=ms,
                         **kafka_python_options(settings))


def _send_all(producer, timeline: Timeline, acks: _Acks,  # type: ignore[no-untyped-def]
              settings: VigilSettings, *, speed: float, include_labels: bool,
              stop: Callable[[], bool] | None, on_vitals: Callable[[int], None] | None,
              bar: ProgressBar) -> None:
    """Hand each record to the producer at its due time, checking acknowledgements."""
    topics = {"vitals": settings.topic_vitals, "labels": settings.topic_labels}
    started = time.perf_counter()
    first_ms: int | None = None
    for i, rec in enumerate(timeline):
        if stop is not None and stop():
            break
        if rec.topic == "labels" and not include_labels:
            continue
        if speed > 0:
            first_ms = rec.at_ms if first_ms is None else first_ms
            acks.sleep_until(started + (rec.at_ms - first_ms) / 1000 / speed)
        acks.wait_room(MAX_UNACKNOWLEDGED)
        n_obs = rec.value.count(b'"code"') if rec.topic == "vitals" else 0
        acks.track(producer.send(topics[rec.topic], key=rec.key.encode(), value=rec.value),
                   rec.topic, n_obs)
        if on_vitals is not None and rec.topic == "vitals":
            on_vitals(acks.vitals)
        if i % 200 == 0:
            bar.update(completed=acks.vitals + acks.labels)


def _close(producer, acks: _Acks, *, failed: bool) -> None:  # type: ignore[no-untyped-def]
    """Close without hanging on a dead broker; what is still unacknowledged fails.

    After a failure the records still in flight get up to the ack timeout to resolve (the
    client fails them itself after ``delivery_timeout_ms``), so the undelivered count is
    final when this returns. ``close`` flushes first and raises if anything is pending, so
    a producer that still holds records (a failure, or Ctrl-C) is force-closed.
    """
    if failed:
        acks.drain()
    clean = acks.outstanding == 0
    try:
        producer.close(timeout=acks.timeout_s if clean else 0)
    except KafkaError:
        log.warning("the replay producer still held records at close: forcing it closed")
        sender = getattr(producer, "_sender", None)  # kafka-python: no public force close
        if sender is not None:
            sender.force_close()
            sender.join(acks.timeout_s)


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class Undelivered(RuntimeError):
    """The broker failed a record or acknowledged nothing for the ack timeout."""


class ReplayError(RuntimeError):
    """A replay that did not deliver everything it was asked to; ``stats`` counts what the
    broker acknowledged, ``undelivered`` the rest (failed, unacknowledged or never sent)."""

    def __init__(self, stats: ReplayStats, total: int, bootstrap: str, why: str) -> None:
        self.stats = stats
        self.total = total
        self.undelivered = total - stats.vitals - stats.labels
        why = " ".join(why.split())  # one line: it is what ``vigil replay`` prints
        super().__init__(f"{self.undelivered} of {total} records were not delivered to "
                         f"{bootstrap} (acknowledged: {stats.vitals} vitals, {stats.labels} "
                         f"labels): {why}")


class _Acks:
    """Counts the broker's acknowledgements; detects failures and silence.

    The producer's I/O thread calls :meth:`_ok` and :meth:`_failed`; the replay thread
    sends, checks and waits. The clock of silence runs only while records await an
    acknowledgement, so a paced replay idling between records never times out.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self.sent = self.vitals = self.labels = self.observations = self.failed = 0
        self.error: BaseException | None = None
        self._progress_at = time.monotonic()

    @property
    def outstanding(self) -> int:
        return self.sent - self.vitals - self.labels - self.failed

    def track(self, future, topic: str, n_obs: int) -> None:  # type: ignore[no-untyped-def]
        with self._cond:
            if self.outstanding == 0:
                self._progress_at = time.monotonic()  # the silence clock starts now
            self.sent += 1
        future.add_callback(self._ok, topic, n_obs)
        future.add_errback(self._failed)

    def _ok(self, topic: str, n_obs: int, _metadata: object) -> None:
        with self._cond:
            if topic == "vitals":
                self.vitals += 1
                self.observations += n_obs
            else:
                self.labels += 1
            self._progress_at = time.monotonic()
            self._cond.notify_all()

    def _failed(self, exc: BaseException) -> None:
        with self._cond:
            self.failed += 1
            self.error = self.error or exc
            self._cond.notify_all()

    def check(self) -> None:
        """Raise :class:`Undelivered` if a record failed or the broker has gone silent."""
        with self._cond:
            if self.error is not None:
                raise Undelivered(f"the broker did not take a record: {_why(self.error)}")
            silent = time.monotonic() - self._progress_at
            if self.outstanding and silent > self.timeout_s:
                raise Undelivered(f"no acknowledgement from the broker for {silent:.0f} s "
                                  f"({self.outstanding} records waiting)")

    def sleep_until(self, due: float) -> None:
        """Pace the replay, still noticing a dead broker while it waits."""
        while (delay := due - time.perf_counter()) > 0:
            self.check()
            time.sleep(min(delay, 0.5))

    def wait_room(self, limit: int) -> None:
        """Block while ``limit`` records await acknowledgement, or raise as :meth:`check`."""
        with self._cond:
            while self.outstanding >= limit:
                self.check()
                self._cond.wait(0.2)
            self.check()

    def wait_all(self) -> None:
        """Block until every sent record is acknowledged, or raise as :meth:`check` does."""
        with self._cond:
            while self.outstanding:
                self.check()
                self._cond.wait(0.2)
            self.check()

    def drain(self) -> None:
        """After a failure: give in-flight records up to the ack timeout to resolve."""
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            while self.outstanding and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(min(left, 0.2))

    def fill(self, stats: ReplayStats) -> None:
        with self._cond:
            stats.vitals, stats.labels = self.vitals, self.labels
            stats.observations = self.observations


def replay_path(settings: VigilSettings, path: Path, *, limit: int | None = None,
                **kwargs) -> ReplayStats:
    stays = load_stays(Path(path), limit)
    if not stays:
        raise SystemExit(f"no PhysioNet 2019 (.psv) or 2012 (.txt) records found in {path}")
    return replay_stays(settings, stays, **kwargs)
