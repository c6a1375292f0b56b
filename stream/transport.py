"""faust's aiokafka transport with two changes, both to faust's consumer.

A short fetch wait. faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Apache
Kafka answers a waiting fetch as soon as records arrive, so the wait costs nothing there;
tansu 0.6 holds the fetch for (much of) the wait instead. Measured here with a plain
aiokafka consumer at 10 records/s: p50 latency 398 ms with a 1,500 ms wait, 3 ms with 50 ms.
Every alert would inherit that delay, so Vigil's workers use ``VIGIL_FETCH_MAX_WAIT_MS``
(default 50) on any broker: a waiting fetch every 50 ms per worker is negligible load for
Kafka too.

Acknowledged offsets without duplicates. faust commits the first run of consecutive
offsets in its list of acknowledged ones (``Consumer._new_offset``), after adding the
offsets of its gap list to it. An offset can be in that list twice: acknowledged by faust
and also in a gap (the offsets Vigil fetched itself are registered as a gap, and faust's
own, later copies of them are acknowledged too), or acknowledged after its gap was merged
in. A duplicate ends the run (``5, 6, 6, 7`` is two runs), so each commit then moved on by
a run of one or two: after a worker was killed, the group's commits reached the partitions'
ends 50 s after the last record (issue 13). Each partition's list here drops duplicates
when faust sorts it, which it does before looking for the run.

Registered as the ``vigil://`` broker scheme; everything else is faust's own transport.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["Transport", "SCHEME", "configure", "AckedOffsets"]

SCHEME = "vigil"


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    fetch_max_wait_ms: ClassVar[int] = 50

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # read by AIOKafkaConsumer.start() when it builds its Fetcher
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


class AckedOffsets(list[int]):
    """One partition's acknowledged offsets, as faust keeps them, minus duplicates: faust
    sorts the list before it looks for the run to commit, and a sort here also drops the
    repeats (an offset acknowledged twice is acknowledged)."""

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self[:] = sorted(set(self), *args, **kwargs)


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acked = defaultdict(AckedOffsets)

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


def configure(fetch_max_wait_ms: int) -> None:
    _ConsumerThread.fetch_max_wait_ms = fetch_max_wait_ms


drivers.TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:Transport")
