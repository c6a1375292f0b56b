"""The alert lifecycle of one patient and kind, as a pure state machine over event time.

Rows arrive in a patient's event-time order; each row's severity (or none) moves the
:class:`~vigil.stream.state.AlertTrack` kept in the patients table:

* not active + a severity            -> ``raised`` (a new episode)
* active + a higher severity         -> ``escalated`` (once per step up)
* active + no severity for ``clear_after_ms`` of event time -> ``resolved``

so a risk oscillating around the threshold gives one alert, not one per crossing. The alert
id is a hash of (patient, kind, episode start time): a replay or a restarted worker that
re-processes the same events derives the same ids, so consumers deduplicate on them.
"""

from __future__ import annotations

import hashlib

from vigil.alerts.policy import SEVERITY_RANK
from vigil.stream.state import AlertTrack

__all__ = ["step", "alert_id"]


def alert_id(patient: str, kind: str, episode_start_ms: int) -> str:
    """Deterministic id of one alert episode.

    >>> alert_id("p1", "sepsis", 0) == alert_id("p1", "sepsis", 0) != alert_id("p1", "sepsis", 1)
    True
    """
    h = hashlib.blake2b(f"{patient}|{kind}|{episode_start_ms}".encode(), digest_size=10)
    return h.hexdigest()


def step(track: AlertTrack, severity: str | None, event_ms: int, clear_after_ms: int) -> str | None:
    """Advance ``track`` by one scored row; return the transition it caused, if any.

    >>> t = AlertTrack()
    >>> [step(t, s, h * 3_600_000, 7_200_000) for h, s in enumerate(
    ...     ["medium", None, "medium", "high", "high", None, None, None])]
    ['raised', None, None, 'escalated', None, None, None, 'resolved']
    """
    if event_ms < track.last_ms:  # a late row: it was scored, but the episode has moved on
        return None
    track.last_ms = event_ms
    if severity:
        if not track.active:
            track.active = True
            track.episode_start_ms = event_ms
            track.severity = severity
            track.below_since_ms = -1
            track.episodes += 1
            return "raised"
        track.below_since_ms = -1
        if SEVERITY_RANK[severity] > SEVERITY_RANK[track.severity]:
            track.severity = severity
            return "escalated"
        return None
    if not track.active:
        return None
    if track.below_since_ms < 0:
        track.below_since_ms = event_ms
    if event_ms - track.below_since_ms >= clear_after_ms:
        track.active = False
        track.below_since_ms = -1
        return "resolved"
    return None
