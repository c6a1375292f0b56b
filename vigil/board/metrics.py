"""Prometheus metrics of the board (``GET /metrics``), on the board's own registry.

Labels are small fixed sets (a reason, an outcome): never a user name, an address or a
patient id, which go to the log line of the event instead (user and address only).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

__all__ = ["ACK_REFUSALS", "BoardMetrics", "LOGIN_OUTCOMES", "STREAM_REFUSALS"]

ACK_REFUSALS = ("no_session", "origin", "csrf", "viewer", "out_of_scope")
LOGIN_OUTCOMES = ("success", "failure", "rate_limited", "no_access", "error")
STREAM_REFUSALS = ("per_session", "per_client", "total")


class BoardMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.ack_refused = Counter(
            "vigil_board_ack_refused_total",
            "Acknowledgements refused before reaching Kafka, by reason (no_session, origin, "
            "csrf, viewer, out_of_scope).", ["reason"], registry=r)
        self.acks_sent = Counter("vigil_board_acks_sent_total",
                                 "Acknowledgements produced to the acks topic.", registry=r)
        self.logins = Counter(
            "vigil_board_logins_total",
            "Sign-in attempts (password, token or proxy), by outcome.", ["outcome"], registry=r)
        self.requests_refused = Counter(
            "vigil_board_requests_refused_total",
            "Requests refused by the guard (401 no session, 403 origin or CSRF), by reason.",
            ["reason"], registry=r)
        self.streams = Gauge("vigil_board_event_streams", "Open /events streams.", registry=r)
        self.streams_refused = Counter(
            "vigil_board_event_streams_refused_total",
            "Event streams refused by a connection cap (per_session, per_client, total).",
            ["reason"], registry=r)
        self.sessions = Gauge("vigil_board_sessions", "Live sign-in sessions.", registry=r)
        for reason in ACK_REFUSALS:  # every series exists from the start, at 0
            self.ack_refused.labels(reason)
        for outcome in LOGIN_OUTCOMES:
            self.logins.labels(outcome)
        for reason in STREAM_REFUSALS:
            self.streams_refused.labels(reason)
        for reason in ("no_session", "origin", "csrf"):
            self.requests_refused.labels(reason)

    def render(self) -> bytes:
        return generate_latest(self.registry)
