"""Prometheus metrics of the gateways, in their own registry (one per listener process).

Labels are bounded enumerations: the gateway (``hl7`` / ``fhir``), the ACK outcome, the
refusal reason. Never a patient, a control id or a sending device: a label per patient would
both leak identifiers and grow without bound.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["GatewayMetrics", "CONTENT_TYPE_LATEST"]

# ACK latency: a monitor gateway waits for each ACK before the next message, so the tail
# matters; the top buckets cover the broker timeout (VIGIL_GATEWAY_ACK_TIMEOUT_S, 5 s).
_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """Counters of one listener: messages by outcome, observations, latency, connections."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "vigil_gateway_messages_total",
            "Messages (HL7) or requests (FHIR) answered, by outcome: AA accepted, AE some "
            "observations refused, AR refused whole or not stored (resend).",
            ["gateway", "outcome"], registry=r)
        self.observations_mapped = Counter(
            "vigil_gateway_observations_mapped_total",
            "Observations produced to the vitals topic and acknowledged by the broker.",
            ["gateway"], registry=r)
        self.observations_refused = Counter(
            "vigil_gateway_observations_refused_total",
            "Observations (or whole messages) not used, by reason; each is dead-lettered.",
            ["gateway", "reason"], registry=r)
        self.records = Counter(
            "vigil_gateway_records_total", "Records produced, by topic (vitals / dlq).",
            ["gateway", "topic"], registry=r)
        self.broker_errors = Counter(
            "vigil_gateway_broker_errors_total",
            "Messages answered with an error because the broker did not acknowledge in time.",
            ["gateway"], registry=r)
        self.ack_seconds = Histogram(
            "vigil_gateway_ack_seconds",
            "From a complete message (request) to its ACK (response), broker wait included.",
            ["gateway"], buckets=_ACK_BUCKETS, registry=r)
        self.connections = Gauge(
            "vigil_gateway_connections", "Open MLLP connections.", ["gateway"], registry=r)
        self.connections_closed = Counter(
            "vigil_gateway_connections_closed_total",
            "MLLP connections closed by Vigil, by reason (limit, too_large, read_timeout, "
            "idle_timeout, not_mllp, slow_reader).", ["reason"], registry=r)
        for g in ("hl7", "fhir"):
            for outcome in ("AA", "AE", "AR"):
                self.messages.labels(g, outcome)
            self.observations_mapped.labels(g)
            self.broker_errors.labels(g)
        self.connections.labels("hl7")

    def render(self) -> bytes:
        return generate_latest(self.registry)
