"""The board's state: the latest transition of every alert, reduced from two topics.

Kept pure and synchronous (no Kafka, no clock reads: ``now`` is passed in) so that every rule
the ward relies on — dedupe on ``event_id``, acknowledgement, ordering, the unit filter and
how resolved alerts leave the list — is unit-tested without a broker.

Transitions of one alert arrive in order (alerts are keyed by patient, so one alert lives in
one partition); acknowledgements arrive on another topic, in no order relative to them, so
an ack is matched by time: it covers every transition published up to its ``acked_at``. An
escalation published after the ack (the risk rose further) needs a new acknowledgement.

>>> from datetime import UTC, datetime
>>> from vigil.wire.records import AlertEvent
>>> t = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
>>> ev = AlertEvent(alert_id="a1", event_id="a1:raised", patient="pt-1", kind="sepsis",
...                 severity="high", state="raised", risk=0.4, threshold=0.2, reasons=[],
...                 summary="qSOFA 2", scorer="qsofa", event_time=t, published_at=t,
...                 episode_start=t, record_id="r1", unit="MICU", bed="12")
>>> board = BoardState()
>>> board.apply_alert(ev), board.apply_alert(ev)          # the redelivery changes nothing
(True, False)
>>> [(a.alert_id, a.status) for a in board.active()], board.duplicates
([('a1', 'raised')], 1)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from vigil.wire.records import AckEvent, AlertEvent

__all__ = ["AckMark", "BoardAlert", "BoardState", "SEVERITY_RANK", "Status"]

Status = Literal["raised", "escalated", "acknowledged", "resolved"]
SEVERITY_RANK: dict[str, int] = {"high": 3, "medium": 2, "low": 1}


def utc(t: datetime) -> datetime:
    """Naive times (older producers) are taken as UTC, so they compare with aware ones."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class AckMark:
    """Who acknowledged an alert and when; ``at`` is the acknowledging client's clock."""

    by: str | None
    at: datetime


@dataclass
class BoardAlert:
    """One alert episode on the board: its latest transition and its acknowledgement."""

    latest: AlertEvent
    event_ids: set[str] = field(default_factory=set)
    ack: AckMark | None = None  # read back from Kafka: the acks topic or the worker
    ack_sent: AckMark | None = None  # sent from a board, not yet read back

    @property
    def alert_id(self) -> str:
        return self.latest.alert_id

    @property
    def status(self) -> Status:
        """What the ward must know: is someone on it, or does it still need a nurse?"""
        state = self.latest.state
        if state in ("resolved", "acknowledged"):
            return state
        if self.ack is not None and (state == "raised" or self.ack.at >= utc(self.latest.published_at)):
            return "acknowledged"
        return state

    @property
    def awaiting_ack_readback(self) -> bool:
        """An ack was sent but has not come back from Kafka yet ("ack sent")."""
        return self.ack_sent is not None and self.status in ("raised", "escalated")


class BoardState:
    """Every alert the board knows, reduced from AlertEvents and AckEvents.

    Parameters
    ----------
    resolved_keep_s
        How long a resolved alert stays in the "recently resolved" section (by the time its
        resolution was published); after that it is forgotten and only its id is kept, so a
        late redelivery cannot bring it back.
    """

    def __init__(self, *, resolved_keep_s: float = 1800.0) -> None:
        self.resolved_keep = timedelta(seconds=resolved_keep_s)
        self.alerts: dict[str, BoardAlert] = {}
        self.orphan_acks: dict[str, AckEvent] = {}  # acks read before their alert
        self.forgotten: set[str] = set()  # alert ids that were resolved and expired
        self.malformed: Counter[str] = Counter()  # topic -> records skipped
        self.duplicates = 0
        self.version = 0  # bumped on every change; open pages refresh when it moves

    # --- reducing records ---------------------------------------------------------------
    def apply_alert(self, ev: AlertEvent) -> bool:
        """Take one transition; False when it changes nothing (redelivery or stale)."""
        if ev.alert_id in self.forgotten:
            self.duplicates += 1
            return False
        entry = self.alerts.get(ev.alert_id)
        if entry is not None and ev.event_id in entry.event_ids:
            self.duplicates += 1
            return False
        if entry is None:
            entry = self.alerts[ev.alert_id] = BoardAlert(latest=ev)
            orphan = self.orphan_acks.pop(ev.alert_id, None)
            if orphan is not None:
                entry.ack = AckMark(orphan.by, utc(orphan.acked_at))
        elif entry.latest.state == "resolved":  # resolution is final: a new episode, a new id
            entry.event_ids.add(ev.event_id)
            return False
        elif ev.state == "acknowledged":
            # the worker's acknowledgement carries no explanation: keep the card's drivers
            # and risk, and mark who acknowledged it
            entry.event_ids.add(ev.event_id)
            entry.ack = AckMark(ev.acknowledged_by, utc(ev.acknowledged_at or ev.published_at))
            entry.ack_sent = None
            self._changed()
            return True
        entry.event_ids.add(ev.event_id)
        entry.latest = ev
        if ev.state == "acknowledged":
            at = utc(ev.acknowledged_at or ev.published_at)
            entry.ack = AckMark(ev.acknowledged_by, at)
        if entry.status in ("acknowledged", "resolved"):
            entry.ack_sent = None  # read back (or moot): no longer "ack sent"
        self._changed()
        return True

    def apply_ack(self, ack: AckEvent) -> bool:
        """Take one acknowledgement read from the acks topic."""
        mark = AckMark(ack.by, utc(ack.acked_at))
        entry = self.alerts.get(ack.alert_id)
        if entry is None:
            if ack.alert_id in self.forgotten:
                return False
            self.orphan_acks[ack.alert_id] = ack
            return False
        if entry.ack is not None and entry.ack.at >= mark.at:
            if entry.ack == mark:
                self.duplicates += 1
            return False
        entry.ack = mark
        if entry.status in ("acknowledged", "resolved"):
            entry.ack_sent = None
        self._changed()
        return True

    def mark_ack_sent(self, alert_id: str, by: str | None, at: datetime) -> bool:
        """This board produced an ack: show "ack sent" until it is read back."""
        entry = self.alerts.get(alert_id)
        if entry is None or entry.status not in ("raised", "escalated"):
            return False
        entry.ack_sent = AckMark(by, utc(at))
        self._changed()
        return True

    def count_malformed(self, topic: str) -> None:
        self.malformed[topic] += 1
        self._changed()

    def expire(self, now: datetime) -> bool:
        """Forget resolved alerts older than ``resolved_keep_s``; True if any left."""
        cutoff = utc(now) - self.resolved_keep
        old = [k for k, a in self.alerts.items()
               if a.latest.state == "resolved" and utc(a.latest.published_at) < cutoff]
        for k in old:
            del self.alerts[k]
            self.forgotten.add(k)
            self.orphan_acks.pop(k, None)
        if old:
            self._changed()
        return bool(old)

    # --- reading ------------------------------------------------------------------------
    def get(self, alert_id: str) -> BoardAlert | None:
        return self.alerts.get(alert_id)

    def active(self, unit: str | None = None) -> list[BoardAlert]:
        """Alerts not resolved: those still needing a nurse first, then the most severe,
        then the newest (by the event time of the latest transition)."""
        items = [a for a in self.alerts.values()
                 if a.status != "resolved" and (unit is None or a.latest.unit == unit)]
        return sorted(items, key=lambda a: (a.status == "acknowledged",
                                            -SEVERITY_RANK.get(a.latest.severity, 0),
                                            -utc(a.latest.event_time).timestamp(),
                                            a.alert_id))

    def recently_resolved(self, unit: str | None = None) -> list[BoardAlert]:
        """Resolved alerts not yet expired, most recently resolved first."""
        items = [a for a in self.alerts.values()
                 if a.status == "resolved" and (unit is None or a.latest.unit == unit)]
        return sorted(items, key=lambda a: (-utc(a.latest.published_at).timestamp(), a.alert_id))

    def units(self) -> list[str]:
        """Units with an alert on the board, for the filter."""
        return sorted({a.latest.unit for a in self.alerts.values() if a.latest.unit})

    def _changed(self) -> None:
        self.version += 1
