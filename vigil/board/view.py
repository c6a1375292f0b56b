"""What the page receives: the board state as plain JSON, one shape for SSE and the API.

Only what a ward screen may show leaves the service: the pseudonymous patient id, bed and
unit, never a name (Vigil's records carry none, and nothing is looked up here).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from vigil.board.state import BoardAlert, BoardState, utc

__all__ = ["alert_view", "snapshot"]


def _iso(t: datetime | None) -> str | None:
    return utc(t).isoformat() if t is not None else None


def alert_view(a: BoardAlert) -> dict[str, Any]:
    """One alert card. Fields added to AlertEvent later (``trend``, ``transition_reason``)
    are simply empty for older events; the page copes with that."""
    ev = a.latest
    trend = [float(x) for x in ev.trend] or [float(ev.risk)]
    return {
        "alert_id": ev.alert_id,
        "patient": ev.patient,
        "unit": ev.unit,
        "bed": ev.bed,
        "kind": ev.kind,
        "severity": ev.severity,
        "status": a.status,
        "ack_sent": a.awaiting_ack_readback,
        "acknowledged_by": a.ack.by if a.ack else None,
        "acknowledged_at": _iso(a.ack.at) if a.ack else None,
        "risk": float(ev.risk),
        "threshold": float(ev.threshold),
        "summary": ev.summary,
        "reasons": [r.text for r in ev.reasons],
        "transition": ev.state,
        "transition_reason": ev.transition_reason,
        "trend": trend,
        "event_time": _iso(ev.event_time),
        "episode_start": _iso(ev.episode_start),
        "published_at": _iso(ev.published_at),
    }


def snapshot(state: BoardState, unit: str | None = None, *,
             sees: Callable[[str | None], bool] | None = None) -> dict[str, Any]:
    """The whole board (optionally one unit): active alerts in display order, then the
    recently resolved ones, the units for the filter and the malformed-record counts.

    ``sees`` is the reader's unit scope (:meth:`Identity.sees`): alerts of other units,
    and those units' names, are left out here, on the server, not hidden by the page."""
    def shown(a: BoardAlert) -> bool:
        return sees is None or sees(a.latest.unit)

    return {
        "version": state.version,
        "active": [alert_view(a) for a in state.active(unit) if shown(a)],
        "resolved": [alert_view(a) for a in state.recently_resolved(unit) if shown(a)],
        "units": [u for u in state.units() if sees is None or sees(u)],
        "malformed": dict(state.malformed),
    }
