"""The exact end of partitions as of now, from a fetch's high watermark.

tansu's ListOffsets("latest") can be a batch short (../shared/notes/tansu-and-faust.md);
a fetch's high watermark is exact. The consumer that feeds the agents knows one only from its
last fetch of that partition, which can be older than a record it has just delivered on
another topic: a label produced before a vitals record may be missing from the labels
partition's last known end. So whoever must know "everything produced until now" asks here:
a group-less consumer, assigned afresh each time (an answer to an earlier request is then
discarded, not mistaken for a new one), keeps only answers that came after the question.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["LogEnds"]


class LogEnds:
    def __init__(self, bootstrap_servers: str, topic: str, *,
                 options: Mapping[str, Any] | None = None, timeout_s: float = 2.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.options = dict(options or {})
        self.timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None

    async def ends(self, positions: Mapping[int, int]) -> dict[int, int]:
        """partition -> its end now, for each partition of ``positions`` (partition -> an
        offset to fetch from) that answered within the timeout."""
        if not positions:
            return {}
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers, group_id=None,
                # 1 ms: tansu waits out a fetch's whole max wait, and never answers 0
                enable_auto_commit=False, client_id="vigil-log-ends", fetch_max_wait_ms=1,
                **self.options)
            await self._consumer.start()
        c = self._consumer
        tps = {TopicPartition(self.topic, p): max(0, pos) for p, pos in positions.items()}
        c.assign(list(tps))  # its fetcher starts on them at once (in the background)
        for tp, pos in tps.items():
            c.seek(tp, pos)
        asked_ms = int(time.time() * 1000)
        deadline = time.monotonic() + self.timeout_s
        out: dict[int, int] = {}
        try:
            while len(out) < len(tps) and time.monotonic() < deadline:
                for tp in tps:
                    at = c.last_poll_timestamp(tp)
                    end = c.highwater(tp)
                    if at is not None and at >= asked_ms and end is not None:
                        out[tp.partition] = end
                if len(out) < len(tps):
                    await asyncio.sleep(0.001)
        finally:
            c.pause(*tps)  # no fetching between questions
        return out

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
