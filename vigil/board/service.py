"""The running board: state, Kafka feed, ack producer and change signal, started together.

:class:`Board` owns the parts and their lifecycle; :mod:`vigil.board.web` only routes HTTP to
it. Everything runs on one asyncio loop, so the state needs no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from vigil.board.acks import AckRejected, AckSender, make_ack
from vigil.board.feed import AlertFeed
from vigil.board.live import Changes
from vigil.board.roles import Identity
from vigil.board.state import BoardState
from vigil.kinds import registered
from vigil.settings import VigilSettings

__all__ = ["Board", "AckRefused"]

log = logging.getLogger(__name__)


class AckRefused(Exception):
    """An ack the board will not send; ``status`` is the HTTP status that says why and
    ``reason`` a refusal the metrics count (None for an ordinary bad request)."""

    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class Board:
    """One board service: reads the alerts and acks topics, sends acks, wakes open pages.

    Parameters
    ----------
    settings
        Broker and topic names.
    resolved_keep_s
        How long resolved alerts stay in "recently resolved".
    """

    def __init__(self, settings: VigilSettings, *, resolved_keep_s: float = 1800.0,
                 expire_every_s: float = 15.0) -> None:
        self.settings = settings
        self.state = BoardState(resolved_keep_s=resolved_keep_s)
        self.changes = Changes()
        self.feed = AlertFeed(settings, self.state, self.changes.notify)
        self.sender = AckSender(settings)
        self.expire_every_s = expire_every_s
        # each alert kind's name for people, from the kinds registry: the page names none
        self.kind_labels = {k.name: k.label for k in registered(settings)}
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self.feed.run(), name="vigil-board-feed"),
                       asyncio.create_task(self._expire(), name="vigil-board-expiry")]
        try:
            await self.sender.start()
        except Exception as exc:  # the broker may come later: the first ack retries
            log.warning("ack producer not started yet (%s); will retry on the first ack", exc)

    async def stop(self) -> None:
        self.changes.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.sender.stop()

    async def acknowledge(self, alert_id: object, who: Identity,
                          client_address: str | None = None) -> dict[str, str]:
        """Produce the ack of ``alert_id`` by the signed-in ``who``; raises :class:`AckRefused`.

        Only a nurse acknowledges, and only alerts of her units: an alert of another unit
        is "no such alert" (the board does not confirm that it exists)."""
        if who.role != "nurse":
            raise AckRefused(403, f"a {who.role} cannot acknowledge alerts", "viewer")
        entry = self.state.get(alert_id) if isinstance(alert_id, str) else None
        if entry is not None and not who.can_acknowledge(entry.latest.unit):
            raise AckRefused(404, "no such alert on the board", "out_of_scope")
        if entry is None:
            raise AckRefused(404, "no such alert on the board")
        if entry.status == "resolved":
            raise AckRefused(409, "the alert is already resolved")
        if entry.status == "acknowledged":
            return {"status": "acknowledged", "alert_id": entry.alert_id}
        now = datetime.now(UTC)
        try:
            ack = make_ack(entry.latest, who.name, now, role=who.role,
                           auth_method=who.method, client_address=client_address)
        except AckRejected as exc:
            raise AckRefused(400, str(exc)) from exc
        try:
            await self.sender.send(ack)
        except Exception as exc:
            log.warning("ack not sent: %s", exc)
            raise AckRefused(503, "the ack could not be written to Kafka; try again") from exc
        log.info("ack sent for alert %s by %s (%s) from %s", entry.alert_id, who.name,
                 who.role, client_address or "-")
        if self.state.mark_ack_sent(entry.alert_id, ack.by, now):
            self.changes.notify()
        return {"status": "sent", "alert_id": entry.alert_id, "acked_at": now.isoformat()}

    def health(self) -> dict[str, object]:
        """For the unauthenticated container probe: whether it works, nothing about patients
        (no alert counts: how many patients alert on a unit is not public)."""
        return {"ready": self.feed.ready, "error": self.feed.error,
                "ack_producer": self.sender.ready}

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(self.expire_every_s)
            if self.state.expire(datetime.now(UTC)):
                self.changes.notify()
