"""Kafka into the board: the alerts and acks topics, every partition, from the beginning.

The board keeps no state of its own on disk: on start it re-reads both topics, which is
cheap (alerts are few) and means a restarted board shows exactly what a running one shows.
It reads without a consumer group, so any number of boards (one per ward screen server)
see every alert. A record that does not decode is counted, logged with its topic,
partition and offset (never its content: it may carry a patient id) and skipped; one bad
producer must not blank the screen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec

from vigil.board.state import BoardState
from vigil.kafka_config import aiokafka_options
from vigil.settings import VigilSettings
from vigil.wire.records import ACK_DECODER, ALERT_DECODER

__all__ = ["AlertFeed", "take_record"]

log = logging.getLogger(__name__)


def take_record(state: BoardState, settings: VigilSettings, topic: str, partition: int,
                offset: int, value: bytes | None) -> bool:
    """Decode one record of the alerts or acks topic into ``state``; True if it changed.

    >>> s = VigilSettings(); board = BoardState()
    >>> take_record(board, s, s.topic_alerts, 0, 7, b"{not json"), dict(board.malformed)
    (False, {'vigil.alerts': 1})
    """
    try:
        if value is None:
            raise msgspec.DecodeError("empty record (tombstone)")
        if topic == settings.topic_alerts:
            return state.apply_alert(ALERT_DECODER.decode(value))
        if topic == settings.topic_acks:
            return state.apply_ack(ACK_DECODER.decode(value))
        return False
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        state.count_malformed(topic)
        log.warning("skipped a malformed record at %s:%d:%d: %s", topic, partition, offset,
                    (str(exc).splitlines() or [""])[0][:200])
        return False
    except Exception:  # a record the reducer cannot take: skip it rather than re-read for ever
        state.count_malformed(topic)
        log.exception("skipped a record the board could not apply at %s:%d:%d", topic,
                      partition, offset)
        return False


class AlertFeed:
    """Reads both topics into a :class:`BoardState` and calls ``on_change`` after each poll
    that changed it (the board then wakes its open pages once per batch, not per record)."""

    def __init__(self, settings: VigilSettings, state: BoardState,
                 on_change: Callable[[], None], *, probe_every_s: float = 10.0) -> None:
        self.settings = settings
        self.probe_every_s = probe_every_s
        self.state = state
        self.on_change = on_change
        self.ready = False  # assigned and the first poll is done
        self.error: str | None = None  # why it is not (yet) reading, for /health
        self._consumer = None

    async def run(self) -> None:
        """Connect (retrying while the broker or topics are not there yet), then read for
        ever. Cancel the task to stop it."""
        delay = 0.5
        while True:
            failure: Exception = RuntimeError("the alert feed stopped reading")
            try:
                await self._read()
            except asyncio.CancelledError as exc:
                if _stopping():
                    raise  # the board is stopping
                failure = exc  # one of aiokafka's own (see _close): an outage, not a stop
            except Exception as exc:  # the broker went away: show it, back off, reconnect
                failure = exc
            finally:
                await self._close()
            if self.ready:
                delay = 0.5  # it was reading: a fresh outage starts the back-off again
            self.ready = False
            self.error = (str(failure) or type(failure).__name__)[:300]
            self.on_change()  # open pages must say they are not reading alerts
            log.warning("alert feed: %s; retrying in %.1f s", self.error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _read(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        s = self.settings
        self._consumer = consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", client_id="vigil-board",
            fetch_max_wait_ms=s.fetch_max_wait_ms, **aiokafka_options(s))
        await consumer.start()
        topics = (s.topic_alerts, s.topic_acks)
        await consumer.topics()  # fetch metadata for every topic
        missing = [t for t in topics if not consumer.partitions_for_topic(t)]
        if missing:
            raise LookupError(f"topics {', '.join(missing)} do not exist yet "
                              "(a worker or `vigil broker` creates them)")
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        first, probed = True, time.monotonic()
        while True:
            if time.monotonic() - probed > self.probe_every_s:
                # aiokafka's fetcher retries a lost broker silently and getmany() just
                # returns nothing: ask for metadata, which fails, so the board shows it
                await asyncio.wait_for(consumer.topics(), 10.0)
                probed = time.monotonic()
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            before = self.state.version  # moves on every change, malformed counts included
            for tp, records in batches.items():
                for r in records:
                    take_record(self.state, s, tp.topic, tp.partition, r.offset, r.value)
            if first:
                self.ready, self.error = True, None
                log.info("alert feed reading %d partitions of %s", len(tps), ", ".join(topics))
            if first or self.state.version != before:
                self.on_change()
            first = False

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except asyncio.CancelledError:
                # aiokafka 0.14's fetcher awaits its own cancelled task when stopped after
                # the broker went away; only a cancel of this task is a real one
                if _stopping():
                    raise
                log.debug("alert feed: consumer stop was cancelled inside aiokafka")
            except Exception:  # closing a broken connection may fail too
                log.debug("alert feed: consumer stop failed", exc_info=True)


def _stopping() -> bool:
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0
