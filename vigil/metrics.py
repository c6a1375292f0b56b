"""Every Prometheus metric of a Vigil worker, declared once.

Names follow Prometheus conventions (``vigil_`` prefix, base units, ``_total`` counters,
``_seconds`` histograms). Labels are bounded sets (outcome, reason, kind, severity, state,
unit at most): a patient id or pseudonym is never a label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The metric set of one process, on its own registry (tests build several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.info = Info("vigil_worker", "Version, scorers and broker of this worker.", registry=r)
        self.up = Gauge("vigil_worker_up", "1 while the vitals agent is consuming.", registry=r)
        self.broker_offsets_exact = Gauge(
            "vigil_broker_list_offsets_exact",
            "0 when the broker's ListOffsets(latest) lags multi-record batches (tansu).",
            registry=r)
        self.records = Counter(
            "vigil_vitals_records_total",
            "Vitals records consumed, by outcome (accepted, partial, rejected, redelivered).",
            ["outcome"], registry=r)
        self.rejections = Counter(
            "vigil_rejections_total",
            "Refused records or observations, by machine-readable reason.",
            ["reason"], registry=r)
        self.dlq = Counter("vigil_dlq_records_total", "Records published to the DLQ topic.",
                           ["scope"], registry=r)
        self.scores = Counter("vigil_scores_total", "Score records published.", registry=r)
        self.alerts = Counter("vigil_alerts_total", "Alert transitions published.",
                              ["kind", "severity", "state"], registry=r)
        self.labels = Counter("vigil_labels_total", "Outcome labels consumed.", ["kind"],
                              registry=r)
        self.online_labels = Counter(
            "vigil_online_labels_total",
            "Labels offered to the online model, by outcome (learned, unknown_patient, "
            "ahead_of_vitals, too_old, other_kind, no_online_model).", ["outcome"], registry=r)
        self.batch_records = Histogram(
            "vigil_batch_records", "Records per micro-batch taken from the stream.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=r)
        self.batch_seconds = Histogram(
            "vigil_batch_processing_seconds",
            "Wall time to process one micro-batch (validate, window, score, publish, store).",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.scoring_seconds = Histogram(
            "vigil_scoring_seconds", "Wall time of the scorer calls for one micro-batch.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.ingest_to_publish = Histogram(
            "vigil_ingest_to_publish_seconds",
            "From a vitals record's Kafka timestamp to its score/alert being published.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.event_to_alert = Histogram(
            "vigil_event_to_alert_seconds",
            "From the clinical event time to the alert being published (live feeds; a replay "
            "of old data shows its replay delay here).",
            buckets=_LATENCY_BUCKETS + (300, 3600), registry=r)
        self.gap_records = Counter(
            "vigil_gap_records_total",
            "Vitals records faust acked without delivering, fetched and processed by Vigil.",
            registry=r)
        self.errors = Counter("vigil_processing_errors_total",
                              "Batches that failed outside per-record validation.", ["stage"],
                              registry=r)
