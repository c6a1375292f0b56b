"""The alert lifecycle of one patient and kind, as a pure state machine over event time.

Alarm fatigue is what gets alerting systems switched off, so a threshold crossing is not an
alert. Rows arrive in a patient's event-time order and move the
:class:`~vigil.wire.state.AlertTrack` kept in the changelogged patients table:

* **raise**: not active, and the row has a severity (risk at or above the lowest level, or
  a red flag) -> ``raised``, a new episode;
* **refractory**: within ``refractory_ms`` of the last episode's resolution, a new crossing
  at or below that episode's peak severity is *suppressed* (counted, not published); a
  higher severity raises at once;
* **escalation**: active and the severity steps up -> ``escalated`` (once per step; a new
  acknowledgement is then due); active, unacknowledged for ``escalate_after_ms`` of event
  time and still above the clear level -> ``escalated`` once, one severity up (an alert
  that is already clearing is not pushed up to the charge nurse);
* **acknowledgement** (:func:`acknowledge`, from ``vigil.acks``) stops the unacknowledged
  escalation;
* **hysteresis**: active rows between the clear level and the raise level keep the alert;
  only rows below the clear level for ``clear_after_ms`` of event time -> ``resolved``.

So a risk oscillating around the threshold gives one alert, not one per crossing. The alert
id is a hash of (patient, kind, episode start time): a replay or a restarted worker that
re-processes the same events derives the same ids, so consumers deduplicate on them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from vigil.alerts.policy import SEVERITY_RANK
from vigil.wire.durations import HOUR_MS
from vigil.wire.state import AlertTrack

__all__ = ["Rules", "Transition", "acknowledge", "alert_id", "overdue", "step", "TREND_POINTS"]

TREND_POINTS = 12  # recent risks kept per kind for the board's sparkline
_UP = {"low": "medium", "medium": "high", "high": "high"}


@dataclass(frozen=True)
class Rules:
    """Lifecycle timings, all in event-time milliseconds (settings ``VIGIL_ALERT_*``)."""

    clear_after_ms: int = 7_200_000
    refractory_ms: int = 4 * HOUR_MS
    escalate_after_ms: int = 1_800_000


@dataclass(frozen=True)
class Transition:
    """What a row did to a track: ``state`` is published unless it is ``suppressed``."""

    state: str  # raised | escalated | resolved | suppressed
    cause: str  # raised: threshold|flag; escalated: severity|unacknowledged; resolved: recovered


def alert_id(patient: str, kind: str, episode_start_ms: int) -> str:
    """Deterministic id of one alert episode.

    >>> alert_id("p1", "sepsis", 0) == alert_id("p1", "sepsis", 0) != alert_id("p1", "sepsis", 1)
    True
    """
    h = hashlib.blake2b(f"{patient}|{kind}|{episode_start_ms}".encode(), digest_size=10)
    return h.hexdigest()


def step(track: AlertTrack, severity: str | None, below_clear: bool, event_ms: int,
         rules: Rules, risk: float = float("nan"), flagged: bool = False) -> Transition | None:
    """Advance ``track`` by one scored row; return the transition it caused, if any.

    ``severity`` is the row's level (None below the raise level); ``below_clear`` says the
    row is under the lower clear level (and carries no red flag).

    >>> t, r = AlertTrack(), Rules(clear_after_ms=2 * 3_600_000, escalate_after_ms=10**12)
    >>> rows = [("medium", False), (None, False), ("medium", False), ("high", False),
    ...         (None, True), (None, True), (None, True)]
    >>> [getattr(step(t, s, b, h * 3_600_000, r), "state", None) for h, (s, b) in enumerate(rows)]
    ['raised', None, None, 'escalated', None, None, 'resolved']
    """
    if event_ms < track.last_ms:  # a late row: it was scored, but the episode has moved on
        return None
    track.last_ms = event_ms
    if risk == risk:  # not NaN
        track.trend = [*track.trend[-(TREND_POINTS - 1):], round(float(risk), 4)]
    if not track.active:
        if not severity:
            return None
        if (track.resolved_ms >= 0 and event_ms - track.resolved_ms < rules.refractory_ms
                and SEVERITY_RANK[severity] <= SEVERITY_RANK[track.peak]):
            return Transition("suppressed", "refractory")
        track.active = True
        track.episode_start_ms = track.ack_due_from_ms = event_ms
        track.severity = track.peak = severity
        track.below_since_ms = track.acked_ms = -1
        track.acked_by = ""
        track.unacked_escalated = False
        track.episodes += 1
        return Transition("raised", "flag" if flagged else "threshold")
    if track.ack_due_from_ms < 0:  # a track stored before acknowledgements existed
        track.ack_due_from_ms, track.peak = track.episode_start_ms, track.peak or track.severity
    if not below_clear:
        track.below_since_ms = -1
    else:
        if track.below_since_ms < 0:
            track.below_since_ms = event_ms
        if event_ms - track.below_since_ms >= rules.clear_after_ms:
            track.active = False
            track.below_since_ms = -1
            track.resolved_ms = event_ms
            return Transition("resolved", "recovered")
    if severity and SEVERITY_RANK[severity] > SEVERITY_RANK[track.severity]:
        track.severity = severity
        track.peak = _max(track.peak, severity)
        track.acked_ms, track.acked_by = -1, ""  # a worse state needs a fresh acknowledgement
        track.ack_due_from_ms = event_ms
        return Transition("escalated", "severity")
    if (track.acked_ms < 0 and not track.unacked_escalated and not below_clear
            and event_ms - track.ack_due_from_ms >= rules.escalate_after_ms):
        track.unacked_escalated = True
        track.severity = _UP[track.severity]
        track.peak = _max(track.peak, track.severity)
        return Transition("escalated", "unacknowledged")
    return None


def overdue(track: AlertTrack, now_ms: int, rules: Rules) -> Transition | None:
    """The unacknowledged escalation by the wall clock, for a feed that went quiet.

    :func:`step` escalates on the patient's next record; when none comes (a monitor
    unplugged, hourly labs), the worker's sweep calls this instead, so an alert nobody
    answered still reaches the charge nurse on time. Same conditions as in :func:`step`:
    active, not acknowledged, not escalated for this yet, last row above the clear level.

    >>> t = AlertTrack(active=True, episode_start_ms=0, ack_due_from_ms=0, severity="medium")
    >>> r = Rules(escalate_after_ms=1_800_000)
    >>> overdue(t, 1_799_999, r), overdue(t, 1_800_000, r).cause, t.severity
    (None, 'unacknowledged', 'high')
    >>> overdue(t, 9_000_000, r) is None  # once
    True
    """
    if (not track.active or track.acked_ms >= 0 or track.unacked_escalated
            or track.below_since_ms >= 0 or track.ack_due_from_ms < 0
            or now_ms - track.ack_due_from_ms < rules.escalate_after_ms):
        return None
    track.unacked_escalated = True
    track.severity = _UP[track.severity]
    track.peak = _max(track.peak or track.severity, track.severity)
    return Transition("escalated", "unacknowledged")


def acknowledge(track: AlertTrack | None, current_id: str | None, acked_id: str, ack_ms: int,
                by: str) -> str:
    """Apply a nurse's acknowledgement; returns the outcome (also the metric label).

    Only the current episode of an active alert can be acknowledged; acknowledging twice is
    harmless (two nurses click the same alert) and reported as such.

    >>> t = AlertTrack(active=True, episode_start_ms=0)
    >>> [acknowledge(t, "a1", "a1", 60_000, "RN 4"), acknowledge(t, "a1", "a1", 90_000, "RN 5")]
    ['acknowledged', 'already_acknowledged']
    >>> acknowledge(t, "a1", "zz", 60_000, "RN 4")
    'unknown_alert'
    """
    if track is None or current_id != acked_id:
        return "unknown_alert"
    if not track.active:
        return "not_active"
    if track.acked_ms >= 0:
        return "already_acknowledged"
    track.acked_ms = ack_ms
    track.acked_by = by
    return "acknowledged"


def _max(a: str, b: str) -> str:
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b
