"""How a stopping worker leaves its consumer group: LeaveGroup, or its session expiring.

Kafka's LeaveGroup makes a clean stop hand its partitions over at once. On tansu 0.6 it can
freeze the group instead: a member that leaves while the group is forming (mid-rebalance)
is removed from the members but stays the forming group's *leader*
(``impl Group for Inner<O, Forming>`` → ``leave`` in
``tansu-broker/src/coordinator/group/administrator.rs``, tag v0.6.0; unchanged in the
project's main branch on 2026-12-01). Every other member is then told, at every re-join of
the same generation, that the departed member leads; nobody assigns partitions, and no
restart clears it, because a leader is only replaced when it *misses its heartbeats*
(``missed_heartbeat`` takes it) or when a formed group loses it. Issue 13 saw this in about
one worker-group run in ten (scale-down while a rebalance was under way);
``tests/test_group_leave.py`` reproduces it with three requests.

So on tansu a worker stops without LeaveGroup: its session expires after
``VIGIL_SESSION_TIMEOUT_S`` (6 s by default), the coordinator drops it through
``missed_heartbeat``, which clears a departed leader, and its partitions move then rather
than at once. On Apache Kafka (or ``VIGIL_KAFKA_LEAVE_GROUP=on``) LeaveGroup is sent as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from vigil.settings import VigilSettings

__all__ = ["TANSU_CLUSTER_ID", "broker_cluster_id", "configure_group_leave",
           "leave_by_session_expiry", "sends_leave_group"]

log = logging.getLogger(__name__)

#: tansu's default ``--kafka-cluster-id`` (Apache Kafka's are random base64 UUIDs)
TANSU_CLUSTER_ID = "tansu_cluster"


def broker_cluster_id(bootstrap: str, *, options: Mapping[str, Any] | None = None) -> str | None:
    """The cluster id the broker reports, None where it does not say (DescribeCluster is
    Kafka 2.8+)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="vigil-probe",
                             **dict(options or {}))
    try:
        return admin.describe_cluster().get("cluster_id")
    except Exception as e:  # an older broker: judged by its ListOffsets alone
        log.info("the broker did not say its cluster id (%s)", type(e).__name__)
        return None
    finally:
        admin.close()


def sends_leave_group(settings: VigilSettings, cluster_id: str | None,
                      list_offsets_exact: bool) -> bool:
    """Whether this worker should send LeaveGroup when it stops.

    ``auto`` treats a broker as tansu when it names itself so, or when it shows tansu's
    other signature, the ListOffsets answer a batch short (:mod:`vigil.broker_checks`):
    tansu started with another cluster id has the same coordinator."""
    if settings.kafka_leave_group != "auto":
        return settings.kafka_leave_group == "on"
    return cluster_id != TANSU_CLUSTER_ID and list_offsets_exact


def configure_group_leave(settings: VigilSettings, list_offsets_exact: bool, *,
                          options: Mapping[str, Any] | None = None) -> bool:
    """Decide for this worker process (see :func:`sends_leave_group`) and apply it; returns
    whether LeaveGroup is sent."""
    cluster_id = (broker_cluster_id(settings.bootstrap_servers, options=options)
                  if settings.kafka_leave_group == "auto" else None)
    leave = sends_leave_group(settings, cluster_id, list_offsets_exact)
    if not leave:
        leave_by_session_expiry()
    return leave


async def _reset_without_leaving(self: Any) -> None:
    """aiokafka's ``_maybe_leave_group`` without the LeaveGroup request."""
    self.reset_generation()


def leave_by_session_expiry() -> None:
    """Make this process's aiokafka consumers stop without sending LeaveGroup.

    aiokafka has no option for it (only static members skip LeaveGroup, and tansu treats
    static members' joins differently again), and faust builds its consumer itself, so the
    one method that sends the request, ``GroupCoordinator._maybe_leave_group``, is replaced
    for the worker process. Everything else that method does (forgetting the generation
    and member id) is kept."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    if GroupCoordinator._maybe_leave_group is _reset_without_leaving:
        return
    GroupCoordinator._maybe_leave_group = _reset_without_leaving  # type: ignore[method-assign]
    log.info("a stopping worker lets its group session expire instead of sending LeaveGroup "
             "(tansu can keep a departed member as the forming group's leader, see "
             "vigil/group_leave.py; VIGIL_KAFKA_LEAVE_GROUP): its partitions move after the "
             "session timeout")
