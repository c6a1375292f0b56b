"""Notices a broker that lost what this worker read and wrote, and says so.

The embedded tansu keeps everything in memory: when it restarts under a running worker,
topics, offsets and the patients changelog are gone, and a worker that carries on commits
offsets beyond the new logs' ends, skips every new record as a "redelivery" (its patients'
offsets are ahead) or, restarted later, recovers a table that no longer matches what it
published. Kafka's own clients only see a broker that was briefly unreachable.

So every ``VIGIL_BROKER_CHECK_S`` a fresh group-less consumer asks the broker, with one fetch
per partition (whose high watermark is exact on tansu, unlike ListOffsets "latest"), whether
each log still reaches what this worker knows it held: the next offset it expects on each
owned vitals partition, and the next offset after its own last write on each changelog
partition. A log that ends before that, or a topic that is gone, means the broker lost data:
the worker logs one message and exits with :data:`EXIT_BROKER_LOST` without committing, so
a supervisor (or a person) decides what to do with a broker that forgot. A broker that only
cannot be reached is not a loss: it is reported (``vigil_broker_reachable``, ``/health``) and
checked again once it answers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["EXIT_BROKER_LOST", "BrokerWatch", "Verdict"]

log = logging.getLogger(__name__)

EXIT_BROKER_LOST = 69  # EX_UNAVAILABLE: the broker no longer holds this worker's data


@dataclass(frozen=True)
class Verdict:
    """One check: ``lost`` names what is gone (None: nothing); ``reachable`` whether the
    broker answered at all."""

    reachable: bool
    lost: str | None = None


class BrokerWatch:
    def __init__(self, bootstrap_servers: str, *, options: Mapping[str, Any] | None = None,
                 timeout_ms: int = 2000) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.options = dict(options or {})
        self.timeout_ms = timeout_ms

    async def check(self, expected: Mapping[tuple[str, int], int]) -> Verdict:
        """``expected``: (topic, partition) -> an offset the log must still reach."""
        wanted = {tp: n for tp, n in expected.items() if n > 0}
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, client_id="vigil-broker-watch",
                                    request_timeout_ms=self.timeout_ms,
                                    fetch_max_wait_ms=50, **self.options)
        try:
            await consumer.start()
        except Exception:  # refused, timed out: cannot tell anything now
            return Verdict(reachable=False)
        try:
            topics = await consumer.topics()
            for topic in sorted({t for t, _ in wanted}):
                if topic not in topics:
                    return Verdict(True, f"topic {topic} no longer exists on the broker")
            tps = {TopicPartition(t, p): n for (t, p), n in wanted.items()}
            if not tps:
                return Verdict(True)
            consumer.assign(list(tps))
            for tp, n in tps.items():
                consumer.seek(tp, n - 1)
            await consumer.getmany(*tps, timeout_ms=self.timeout_ms, max_records=len(tps))
            for tp, n in sorted(tps.items()):
                end = consumer.highwater(tp)
                if end is not None and end < n:
                    return Verdict(True, f"{tp.topic}[{tp.partition}] now ends at offset {end}, "
                                         f"but this worker had already seen it reach {n}")
            return Verdict(True)
        except Exception:
            log.debug("broker check failed", exc_info=True)
            return Verdict(reachable=False)
        finally:
            try:
                await consumer.stop()
            except Exception:  # pragma: no cover - closing a half-open client
                pass
