"""A stopping worker on tansu lets its session expire instead of sending LeaveGroup
(vigil/group_leave.py, issue 13): what tansu does with a leader that leaves a forming group,
and that a Vigil consumer really stops without the request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from vigil.broker import EmbeddedBroker, free_port
from vigil.group_leave import (
    TANSU_CLUSTER_ID,
    broker_cluster_id,
    leave_by_session_expiry,
    sends_leave_group,
)
from vigil.settings import VigilSettings

SESSION_MS = 6000  # VIGIL_SESSION_TIMEOUT_S's default
# the consumers' test: the stopped consumer must still be a member when the next one's join
# is answered, 3 s (tansu's follower pause) after its stop, however slow the machine is
CONSUMER_SESSION_MS = 12_000
GROUP = "g"


class _Coordinator:
    """Group requests sent one by one, as a consumer would, so that the order is exact."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def __aenter__(self) -> _Coordinator:
        from aiokafka.client import AIOKafkaClient

        self.client = AIOKafkaClient(bootstrap_servers=self.bootstrap)
        await self.client.bootstrap()
        self.node = next(iter(self.client.cluster.brokers())).nodeId  # one broker
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def join(self, member_id: str = "") -> tuple[str, str]:
        """(member id, leader id) after a join; a new member takes the id it is given."""
        from aiokafka.protocol.group import JoinGroupRequest

        def request(m: str) -> JoinGroupRequest:
            return JoinGroupRequest(GROUP, SESSION_MS, 10_000, m, None, "consumer",
                                    [("roundrobin", b"")])

        r = await self.client.send(self.node, request(member_id))
        if r.error_code == 79:  # MEMBER_ID_REQUIRED (KIP-394): join again with it
            r = await self.client.send(self.node, request(r.member_id))
        assert r.error_code == 0, r
        return r.member_id, r.leader_id

    async def leave(self, member_id: str) -> None:
        from aiokafka.protocol.group import LeaveGroupRequest

        r = await self.client.send(self.node, LeaveGroupRequest(GROUP, member_id))
        assert r.error_code == 0, r


async def _leader_after(c: _Coordinator, member: str, within_s: float) -> list[str]:
    """The leaders ``member`` is told of at each re-join, until it leads or time is up."""
    seen: list[str] = []
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        _, leader = await c.join(member)
        seen.append(leader)
        if leader == member:
            break
    return seen


@pytest.mark.parametrize("how", ["leave", "expire"])
def test_tansu_keeps_a_member_that_left_a_forming_group_as_its_leader(how: str) -> None:
    """Why: x leads a forming group that y joins; x goes. With LeaveGroup, y is told at
    every re-join, far past the session timeout, that x leads; when x's session expires
    instead, y leads within a few seconds. If this fails after a tansu upgrade, the
    coordinator was fixed: VIGIL_KAFKA_LEAVE_GROUP=auto can then send LeaveGroup again."""

    async def run(bootstrap: str) -> list[str]:
        async with _Coordinator(bootstrap) as c:
            x, leader = await c.join()
            assert leader == x
            y, leader = await c.join()  # nobody synced: the group is still forming
            assert leader == x
            if how == "leave":
                await c.leave(x)
            return [("x" if who == x else "y" if who == y else who)
                    for who in await _leader_after(c, y, within_s=2 * SESSION_MS / 1000)]

    with EmbeddedBroker(free_port()) as broker:
        leaders = asyncio.run(run(broker.bootstrap))
    if how == "leave":
        assert set(leaders) == {"x"} and len(leaders) >= 3, leaders
    else:
        assert leaders[-1] == "y", leaders


async def _assigned(consumer: Any, topic: str, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while topic not in {tp.topic for tp in consumer.assignment()}:
        assert time.monotonic() < deadline, f"the consumer was never assigned {topic}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("patched", [False, True])
def test_a_consumer_stops_without_leave_group_once_told_to(patched: bool,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """A real aiokafka consumer (the one faust runs) leads a formed group and stops. Sent
    LeaveGroup, it is gone at once: the next member to join leads. Without, it is still the
    leader the next member is told of, until its session expires."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    # restored after the test: the replacement is process-wide by design
    monkeypatch.setattr(GroupCoordinator, "_maybe_leave_group",
                        GroupCoordinator._maybe_leave_group)
    if patched:
        leave_by_session_expiry()

    async def joined(bootstrap: str) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer("t", bootstrap_servers=bootstrap, group_id=GROUP,
                                    session_timeout_ms=CONSUMER_SESSION_MS,
                                    heartbeat_interval_ms=1000)
        await consumer.start()
        try:
            await _assigned(consumer, "t")
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def run(bootstrap: str) -> tuple[str, list[str]]:
        # aiokafka sends LeaveGroup only from generation 1 on (tansu starts at 0), as a
        # worker has after any rebalance: so a first consumer forms generation 0 and goes
        # (its LeaveGroup sent here, from a formed group, which tansu handles)
        first = await joined(bootstrap)
        first_id = first._coordinator.member_id
        await first.stop()
        async with _Coordinator(bootstrap) as c:
            await c.leave(first_id)
        consumer = await joined(bootstrap)
        try:
            assert consumer._coordinator.generation > 0
            stopped = consumer._coordinator.member_id
        finally:
            await consumer.stop()
        async with _Coordinator(bootstrap) as c:
            y, first = await c.join()
            later = await _leader_after(c, y, within_s=3 * CONSUMER_SESSION_MS / 1000)
            return stopped, ["y" if who == y else who for who in [first, *later]]

    with EmbeddedBroker(free_port()) as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic("t", 2, 1)])
        admin.close()
        stopped, leaders = asyncio.run(run(broker.bootstrap))
    if patched:
        assert leaders[0] == stopped, leaders  # still a member: no LeaveGroup was sent
    else:
        assert leaders[0] == "y", leaders
    assert leaders[-1] == "y", leaders  # either way the group moves on


def _settings(mode: str) -> VigilSettings:
    return VigilSettings(kafka_leave_group=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "cluster_id", "exact", "expected"), [
    ("auto", TANSU_CLUSTER_ID, False, False),   # tansu as shipped
    ("auto", TANSU_CLUSTER_ID, True, False),    # a tansu with ListOffsets fixed
    ("auto", "custom-id", False, False),        # a tansu started with its own cluster id
    ("auto", "MkU3OEVBNTcwNTJENDM2Qk", True, True),  # Apache Kafka
    ("auto", None, True, True),                 # a broker too old to say its id
    ("on", TANSU_CLUSTER_ID, False, True),
    ("off", "MkU3OEVBNTcwNTJENDM2Qk", True, False),
])
def test_when_leave_group_is_sent(mode: str, cluster_id: str | None, exact: bool,
                                  expected: bool) -> None:
    assert sends_leave_group(_settings(mode), cluster_id, exact) is expected


def test_the_embedded_broker_names_itself_tansu() -> None:
    with EmbeddedBroker(free_port()) as broker:
        assert broker_cluster_id(broker.bootstrap) == TANSU_CLUSTER_ID
