"""Event time in one place: milliseconds since the epoch, UTC, and the spans Vigil counts in.

Every topic carries RFC 3339 times with a zone; inside Vigil an event time is an ``int`` of
epoch milliseconds (cheap to compare and store), converted here and nowhere else.

>>> ms_to_dt(HOUR_MS).isoformat(), dt_to_ms(ms_to_dt(1_500))
('1970-01-01T01:00:00+00:00', 1500)
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["DAY_MS", "HOUR_MS", "MINUTE_MS", "SECOND_MS", "dt_to_ms", "ms_to_dt"]

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def dt_to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)
