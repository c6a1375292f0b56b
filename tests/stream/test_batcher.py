"""MicroBatcher: every event processed exactly once, in order, acked only after processing."""

from __future__ import annotations

import asyncio

import pytest

from vigil.stream.batcher import MicroBatcher


class FakeStream:
    """The two stream methods the batcher uses, fed from a list with optional pauses."""

    def __init__(self, items: list[object]) -> None:
        self.items = items
        self.acked: list[int] = []

    async def events(self):
        for item in self.items:
            if isinstance(item, float):
                await asyncio.sleep(item)  # a quiet period on the feed
                continue
            yield item
        await asyncio.sleep(3600)  # a live feed never ends; the test cancels the batcher

    async def ack(self, event: int) -> bool:
        self.acked.append(event)
        return True


def run(items, *, max_records=4, within_s=0.02, slow_handle_s=0.0, fail_on=None):
    stream = FakeStream(items)
    batches: list[list[int]] = []
    failures: list[BaseException] = []

    async def handle(batch):
        if slow_handle_s:
            await asyncio.sleep(slow_handle_s)  # events keep arriving meanwhile
        if fail_on is not None and fail_on in batch:
            raise RuntimeError("broker refused")
        batches.append(list(batch))

    async def main():
        b = MicroBatcher(handle, max_records, within_s, stream, on_failure=failures.append)
        task = asyncio.create_task(b.run())
        while not task.done() and (len(stream.acked) < sum(isinstance(i, int) for i in items)):
            await asyncio.sleep(0.01)
            if failures:
                break
        await asyncio.sleep(within_s * 3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 30))
    return batches, stream.acked, failures


def test_full_batches_flush_at_max_and_the_tail_by_time() -> None:
    batches, acked, failures = run(list(range(10)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sum(batches, []) == list(range(10)) == acked
    assert not failures


def test_a_quiet_feed_flushes_a_partial_batch_within_the_time_bound() -> None:
    batches, acked, _ = run([0, 1, 0.1, 2, 3, 4, 5, 6], max_records=100, within_s=0.02)
    assert batches[0] == [0, 1]  # did not wait for more events
    assert sum(batches, []) == list(range(7)) == acked


def test_events_arriving_during_slow_processing_are_neither_lost_nor_reordered() -> None:
    # the pattern that lost events with faust's take_events
    items = []
    for i in range(60):
        items += [i, 0.003]
    batches, acked, _ = run(items, max_records=5, within_s=0.01, slow_handle_s=0.02)
    assert sum(batches, []) == list(range(60)) == acked


def test_a_failed_batch_is_reported_and_never_acked() -> None:
    batches, acked, failures = run(list(range(8)), max_records=4, fail_on=5)
    assert batches == [[0, 1, 2, 3]] and acked == [0, 1, 2, 3]
    assert len(failures) == 1 and "refused" in str(failures[0])


@pytest.mark.parametrize("max_records", [1, 3, 7])
def test_any_batch_size_keeps_order(max_records) -> None:
    batches, acked, _ = run(list(range(20)), max_records=max_records)
    assert sum(batches, []) == list(range(20)) == acked
    assert all(len(b) <= max_records for b in batches)
