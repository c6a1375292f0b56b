"""Publishes a batch's outputs (scores, alerts, dead letters) and waits until they are stored.

A plain aiokafka producer, separate from faust's: faust's producer must send every
changelog record as its own batch on tansu (see :mod:`vigil.broker_checks`), which made the
per-record score messages the worker's main cost in a profile (asyncio socket writes and
produce requests). Output topics are never used for table recovery, so they keep normal
batching. Records are grouped per topic partition into explicit record batches
(``create_batch``/``send_batch``): one future per batch instead of one per record, which
is most of aiokafka's per-message cost.

Durability is explicit: :meth:`publish` returns only when the broker has acknowledged every
record (acks=all), before the agent writes the table state.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["OutputPublisher"]


class OutputPublisher:
    def __init__(self, bootstrap_servers: str, *,
                 options: Mapping[str, Any] | None = None) -> None:
        """``options``: aiokafka's security options
        (:func:`vigil.kafka_config.aiokafka_options`); none for PLAINTEXT."""
        self.bootstrap_servers = bootstrap_servers
        self.options = dict(options or {})
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._partitions: dict[str, list[int]] = {}
        self._partitioner = DefaultPartitioner()  # Kafka's murmur2: same as keyed send()
        self.written: dict[tuple[str, int], int] = {}  # changelog partition -> next offset

    async def start(self) -> None:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers, acks="all", linger_ms=0,
                    client_id="vigil-outputs",
                    enable_idempotence=False,  # tansu 0.6 cannot InitProducerId for aiokafka
                    **self.options,
                )
                await producer.start()
                self._producer = producer

    async def _partitions_of(self, topic: str) -> list[int]:
        parts = self._partitions.get(topic)
        if parts is None:
            assert self._producer is not None
            parts = sorted(await self._producer.partitions_for(topic))
            self._partitions[topic] = parts
        return parts

    async def publish(self, items: list[tuple[str, bytes | None, bytes]]) -> None:
        """Send ``(topic, key, value)`` records; return once all are acknowledged."""
        if not items:
            return
        if self._producer is None:
            await self.start()
        producer = self._producer
        assert producer is not None
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = defaultdict(list)
        for topic, key, value in items:
            parts = await self._partitions_of(topic)
            if key is None:
                p = parts[hash(value) % len(parts)]
            else:
                p = self._partitioner(key, parts, parts)
            groups[(topic, p)].append((key, value))
        now_ms = int(time.time() * 1000)
        pending = []
        for (topic, p), records in groups.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=now_ms) is None:  # full
                    pending.append(await producer.send_batch(batch, topic, partition=p))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=now_ms)
            pending.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*pending)

    async def publish_changelog(self, topic: str,
                                records: dict[int, list[tuple[bytes, bytes | None]]]) -> None:
        """Write table changelog records so that each partition's log ends in a one-record batch.

        tansu answers ListOffsets("latest") with the base offset of the last record batch + 1,
        and faust ends table recovery there. Ending every write with a batch of exactly one
        record keeps that answer exact, at the price of one extra batch per partition, where
        faust's ``producer_max_batch_size=1`` would pay one batch per record. If a crash lands
        between the two batches, the uncommitted input is re-processed onto the state that
        recovery does see; :func:`vigil.broker_checks.repair_changelog_ends` fixes the log's
        end before the next start. A ``None`` value is a tombstone: the key leaves the table.
        """
        if self._producer is None:
            await self.start()
        producer = self._producer
        assert producer is not None
        now_ms = int(time.time() * 1000)
        pending = []
        last: dict[int, asyncio.Future] = {}  # type: ignore[type-arg]
        for partition, recs in records.items():
            if not recs:
                continue
            *body, final = recs
            if body:
                batch = producer.create_batch()
                for key, value in body:
                    if batch.append(key=key, value=value, timestamp=now_ms) is None:
                        pending.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=now_ms)
                pending.append(await producer.send_batch(batch, topic, partition=partition))
            single = producer.create_batch()
            single.append(key=final[0], value=final[1], timestamp=now_ms)
            last[partition] = await producer.send_batch(single, topic, partition=partition)
            pending.append(last[partition])
        await asyncio.gather(*pending)
        for partition, fut in last.items():  # what the broker must hold from now on
            self.written[(topic, partition)] = fut.result().offset + 1

    async def stop(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
