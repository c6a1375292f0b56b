"""Publishes a batch's outputs (scores, alerts, dead letters) and waits until they are stored.

A plain aiokafka producer, separate from faust's: faust's producer must send every
changelog record as its own batch on tansu (see :mod:`vigil.broker_checks`), which made the
per-record score messages the worker's main cost in a profile (asyncio socket writes and
produce requests). Output topics are never used for table recovery, so they keep normal
batching. Durability is explicit: :meth:`publish` returns only when the broker has
acknowledged every record (acks=all), before the agent writes the table state.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

__all__ = ["OutputPublisher"]


class OutputPublisher:
    def __init__(self, bootstrap_servers: str, *, linger_ms: int = 2) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers, acks="all",
                    linger_ms=self.linger_ms, client_id="vigil-outputs",
                    enable_idempotence=False,  # tansu 0.6 cannot InitProducerId for aiokafka
                )
                await producer.start()
                self._producer = producer

    async def publish(self, items: list[tuple[str, bytes | None, bytes]]) -> None:
        """Send ``(topic, key, value)`` records; return once all are acknowledged."""
        if not items:
            return
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        send = self._producer.send
        pending = [await send(topic, value=value, key=key) for topic, key, value in items]
        await asyncio.gather(*pending)

    async def stop(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
