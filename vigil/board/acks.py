"""Acknowledgements from the board: build a valid :class:`AckEvent` and produce it.

The ack goes to the acks topic keyed by the patient pseudonym, the same key bytes as the
patient's vitals and alerts, so it lands in the partition (hence the worker) that holds the
patient's alert state. It is checked with the same msgspec decoder the worker applies before
it is sent: an ack the worker would dead-letter is refused here, where the nurse sees why.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from vigil.kafka_config import aiokafka_options
from vigil.settings import VigilSettings
from vigil.wire.records import ACK_DECODER, AckEvent, AlertEvent, encode

__all__ = ["AckRejected", "AckSender", "make_ack"]


class AckRejected(ValueError):
    """The acknowledgement is not valid (who acknowledged is missing or too long)."""


def make_ack(alert: AlertEvent, by: object, acked_at: datetime, *, role: str | None = None,
             auth_method: str | None = None, client_address: str | None = None) -> AckEvent:
    """The ack of ``alert`` by ``by`` at ``acked_at``, validated as the worker will.

    The board passes the signed-in identity as ``by`` with its ``role``, how it signed in
    (``auth_method``) and the ``client_address`` of the request: the audit trail.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    >>> a = AlertEvent(alert_id="a1", event_id="e1", patient="pt-1", kind="sepsis",
    ...     severity="high", state="raised", risk=0.4, threshold=0.2, reasons=[], summary="",
    ...     scorer="qsofa", event_time=t, published_at=t, episode_start=t, record_id="r1")
    >>> make_ack(a, " RN 4 ", t).by
    'RN 4'
    >>> make_ack(a, "", t)
    Traceback (most recent call last):
    ...
    vigil.board.acks.AckRejected: say who acknowledges (initials or role, e.g. "RN 4")
    """
    if not isinstance(by, str) or not by.strip():
        # an ack nobody owns is no acknowledgement: the escalation exists to find an owner
        raise AckRejected('say who acknowledges (initials or role, e.g. "RN 4")')
    ack = AckEvent(alert_id=alert.alert_id, patient=alert.patient, kind=alert.kind,
                   acked_at=acked_at, by=by.strip(), role=role, auth_method=auth_method,
                   client_address=client_address)
    try:
        return ACK_DECODER.decode(encode(ack))  # the constraints are checked on decode only
    except msgspec.ValidationError as exc:
        raise AckRejected(str(exc)) from exc


class AckSender:
    """An aiokafka producer for the acks topic, started and stopped with the board."""

    def __init__(self, settings: VigilSettings) -> None:
        self.settings = settings
        self._producer = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        # acks=all: the board says "ack sent" only once the broker has it. Not idempotent:
        # tansu refuses aiokafka's InitProducerId (see the tansu notes); a duplicate ack is
        # harmless, the worker and the boards take the latest per alert.
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers,
                                    acks="all", linger_ms=0, client_id="vigil-board-acks",
                                    request_timeout_ms=10_000,
                                    **aiokafka_options(self.settings))
        await producer.start()
        self._producer = producer

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def send(self, ack: AckEvent) -> None:
        """Produce ``ack`` and wait for the broker's acknowledgement."""
        if self._producer is None:
            await self.start()
        await self._producer.send_and_wait(self.settings.topic_acks, encode(ack),
                                           key=ack.patient.encode())

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
