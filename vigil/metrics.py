"""Every Prometheus metric of a Vigil worker, declared once.

Names follow Prometheus conventions (``vigil_`` prefix, base units, ``_total`` counters,
``_seconds`` histograms). Labels are bounded sets (outcome, reason, kind, severity, state,
unit at most): a patient id or pseudonym is never a label.
"""

from __future__ import annotations

import threading
import time
import typing
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily

from vigil.kinds import registered
from vigil.wire.records import AlertEvent, Rejection, ScoreRecord
from vigil.wire.state import PatientState

__all__ = ["Metrics", "UnitCensus", "watch_jax_compilations", "MAX_UNITS"]

# Bounded label values, exported at 0 from the start (see Metrics._initialise_series).
SEVERITIES: tuple[str, ...] = typing.get_args(typing.get_type_hints(AlertEvent)["severity"])
ALERT_STATES: tuple[str, ...] = typing.get_args(typing.get_type_hints(AlertEvent)["state"])
REJECTION_REASONS: tuple[str, ...] = typing.get_args(typing.get_type_hints(Rejection)["reason"])
RECORD_OUTCOMES = ("accepted", "partial", "rejected", "redelivered")
ESCALATION_CAUSES = ("severity", "unacknowledged")
ACK_OUTCOMES = ("acknowledged", "already_acknowledged", "not_active", "unknown_alert", "rejected")
MAX_UNITS = 64  # distinct ICU unit names with their own label; later ones are "other"
CENSUS_HORIZON_S = 2 * 3600  # a patient without accepted vitals this long leaves the census

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The metric set of one process, on its own registry (tests build several)."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 kinds: Iterable[str] | None = None) -> None:
        """``kinds``: the alert kinds whose series start at 0 (default: the built-in ones;
        the worker passes its registered kinds)."""
        self.kinds = tuple(kinds) if kinds is not None else tuple(k.name for k in registered())
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.info = Info("vigil_worker", "Version, scorers and broker of this worker.", registry=r)
        self.up = Gauge("vigil_worker_up", "1 while the vitals agent is consuming.", registry=r)
        self.broker_offsets_exact = Gauge(
            "vigil_broker_list_offsets_exact",
            "0 when the broker's ListOffsets(latest) lags multi-record batches (tansu).",
            registry=r)
        self.broker_reachable = Gauge(
            "vigil_broker_reachable",
            "1 when the last broker check (every VIGIL_BROKER_CHECK_S) got an answer; a "
            "broker that lost this worker's data ends the worker instead (exit code 69).",
            registry=r)
        self.broker_reachable.set(1)
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
            "ahead_of_vitals, too_old, other_kind, no_online_model; redelivered: read again after "
            "a crash or a partition move, already queued, skipped).", ["outcome"], registry=r)
        self.labels_applied = Counter(
            "vigil_labels_applied_total",
            "Queued labels taken from their partition's queue, by what made them due: "
            "'stream' (the partition's vitals passed their hour: reproducible) or 'idle' "
            "(the partition's vitals were quiet for VIGIL_LABEL_IDLE_S: by the wall clock).",
            ["by"], registry=r)
        self.labels_pulled = Counter(
            "vigil_labels_pulled_total",
            "Labels a vitals batch fetched from the broker itself, ahead of faust's delivery "
            "(its wait for the labels partition's end; faust's copies are skipped).",
            registry=r)
        self.label_waits = Counter(
            "vigil_label_waits_total",
            "Vitals batches that waited for the labels partition to catch up, by outcome "
            "(caught_up; timed_out: the batch went on without, what was learned before it "
            "may then differ between runs).", ["outcome"], registry=r)
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
        self.acks = Counter(
            "vigil_alert_acks_total",
            "Acknowledgements consumed, by outcome (acknowledged, already_acknowledged, "
            "not_active, unknown_alert, rejected).", ["kind", "outcome"], registry=r)
        self.time_to_ack = Histogram(
            "vigil_alert_time_to_ack_seconds",
            "From an alert being raised, or last escalated by severity (event time), to its "
            "acknowledgement.", ["kind"],
            buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400), registry=r)
        self.escalations = Counter(
            "vigil_alert_escalations_total",
            "Escalations, by cause (severity: the risk rose; unacknowledged: nobody acked "
            "within VIGIL_ALERT_ESCALATE_AFTER_S).", ["kind", "cause"], registry=r)
        self.suppressed = Counter(
            "vigil_alerts_suppressed_total",
            "Threshold crossings that did not alert, by cause (refractory).",
            ["kind", "cause"], registry=r)
        self.risk = Histogram(
            "vigil_risk", "Risk of every scored row, by alert kind (drift watch).", ["kind"],
            buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0),
            registry=r)
        self.expired = Counter(
            "vigil_patients_expired_total",
            "Patient states removed after VIGIL_PATIENT_TTL_S without records or active alerts.",
            registry=r)
        self.sweeps = Counter(
            "vigil_alert_sweeps_total",
            "Overdue-alert sweeps completed (every VIGIL_ALERT_SWEEP_S while the vitals agent "
            "consumes): escalations of quiet live feeds, removal of idle patients.",
            registry=r)
        self.errors = Counter("vigil_processing_errors_total",
                              "Batches that failed outside per-record validation.", ["stage"],
                              registry=r)
        # --- operations (issue 6) -------------------------------------------------------
        self.scored_rows = Histogram(
            "vigil_scored_rows",
            "Rows scored per micro-batch; every scorer call is padded to the fixed shape "
            "VIGIL_SCORE_BATCH_SIZE, so this shows how full those calls are.",
            buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=r)
        self.consumer_lag = Gauge(
            "vigil_consumer_lag_records",
            "Records of an assigned partition this worker has not committed yet: the "
            "highwater from the latest Fetch response minus the group's committed offset, "
            "computed at scrape time. faust commits every few seconds, so a healthy worker "
            "shows a few seconds' worth. The broker's ListOffsets(latest) is not used: tansu "
            "returns the last batch's base offset + 1 there, Fetch's highwater is exact.",
            ["topic", "partition"], registry=r)
        self.unit_records = Counter(
            "vigil_unit_vitals_records_total",
            "Accepted vitals records by ICU unit (the first "
            f"{MAX_UNITS} units seen keep their name, later ones are 'other', none is "
            "'unknown').", ["unit"], registry=r)
        self.unit_last_seen = Gauge(
            "vigil_unit_last_vitals_timestamp_seconds",
            "Kafka timestamp (Unix seconds) of the newest accepted vitals record of each unit "
            "this worker processed: a silent monitor feed stops moving it.", ["unit"],
            registry=r)
        self.unit_patients = Gauge(
            "vigil_unit_patients",
            f"Patients of this worker's partitions with vitals records processed in the last "
            f"{CENSUS_HORIZON_S // 3600} h, by unit (the unit's load).", ["unit"], registry=r)
        self.unit_patients_at_risk = Gauge(
            "vigil_unit_patients_at_risk",
            "Of vigil_unit_patients, those with an active alert, by unit, kind and the "
            "alert's current severity.", ["unit", "kind", "severity"], registry=r)
        registry_jax_compilations(r)
        # process_start_time_seconds (restarts), CPU and memory of this worker
        ProcessCollector(registry=r)
        self._units: set[str] = set()
        self.census = UnitCensus()
        self._initialise_series()

    def _initialise_series(self) -> None:
        """Export every known label combination at 0 from the start.

        A counter that has never been incremented is otherwise absent, and a rule such as
        ``increase(vigil_alert_escalations_total{cause="unacknowledged"}[15m]) > 0`` cannot
        tell "none happened" from "the metric was renamed" (Prometheus best practice).
        """
        for kind in self.kinds:
            self.labels.labels(kind)
            self.risk.labels(kind)
            self.time_to_ack.labels(kind)
            for cause in ESCALATION_CAUSES:
                self.escalations.labels(kind, cause)
            self.suppressed.labels(kind, "refractory")
            for outcome in ACK_OUTCOMES:
                self.acks.labels(kind, outcome)
            for severity in SEVERITIES:
                for state in ALERT_STATES:
                    self.alerts.labels(kind, severity, state)
        for outcome in RECORD_OUTCOMES:
            self.records.labels(outcome)
        for reason in REJECTION_REASONS:
            self.rejections.labels(reason)
        for scope in ("record", "observations"):
            self.dlq.labels(scope)
        for stage in ("batch", "labels", "acks", "sweep"):
            self.errors.labels(stage)
        for by in ("stream", "idle"):
            self.labels_applied.labels(by)
        for outcome in ("caught_up", "timed_out"):
            self.label_waits.labels(outcome)

    def add_worker_info(self, **labels: str) -> None:
        """Add labels (model artifact id, batch shape …) to ``vigil_worker``'s info.

        The agents set the first labels when they are wired; the worker adds what only it
        knows. Prometheus' Info replaces its whole value, so this merges with what is set.
        """
        current: dict[str, str] = {}
        for family in self.info.collect():
            for sample in family.samples:
                current.update(sample.labels)
        self.info.info({**current, **labels})

    def unit_label(self, unit: str | None) -> str:
        """The ``unit`` label for a unit name from the input data, bounded.

        Unit names come from the bedside feeds: a typo per record must not create a time
        series each. The first :data:`MAX_UNITS` names keep their own label, later ones
        share ``other``; a record without a unit counts as ``unknown``.
        """
        unit = (unit or "").strip()[:32]
        if not unit:
            return "unknown"
        if unit in self._units:
            return unit
        if len(self._units) < MAX_UNITS:
            self._units.add(unit)
            return unit
        return "other"

    def observe_batch(self, res: Any, n: int, started: float) -> None:
        """Everything one processed vitals batch (a processor BatchResult) adds."""
        self.batch_records.observe(n)
        self.scored_rows.observe(res.scored_rows)
        self.observe_units(res.scores, res.states, time.time())
        for outcome, count in res.outcomes.items():
            self.records.labels(outcome).inc(count)
        for reason, count in res.reasons.items():
            self.rejections.labels(reason).inc(count)
        for _, d in res.dead:
            self.dlq.labels(d.scope).inc()
        self.scores.inc(len(res.scores))
        now = datetime.now(UTC)
        for _, a in res.alerts:
            self.alerts.labels(a.kind, a.severity, a.state).inc()
            self.event_to_alert.observe(max(0.0, (now - a.event_time).total_seconds()))
        for (kind, cause), count in res.escalations.items():
            self.escalations.labels(kind, cause).inc(count)
        for (kind, cause), count in res.suppressed.items():
            self.suppressed.labels(kind, cause).inc(count)
        for kind, risks in res.risks.items():
            hist = self.risk.labels(kind)
            for r in risks:
                hist.observe(r)
        for lag in res.ingest_lag_s:
            self.ingest_to_publish.observe(lag)
        self.batch_seconds.observe(time.perf_counter() - started)

    def observe_units(self, scores: Iterable[tuple[str, ScoreRecord]],
                      states: Mapping[str, tuple[int, PatientState]], now_s: float) -> None:
        """Per-unit feed activity (from the batch's scores) and census (from its states)."""
        newest: dict[str, float] = {}
        counts: dict[str, int] = defaultdict(int)  # one labelled inc per unit, not per row
        for _, score in scores:
            unit = self.unit_label(score.unit)
            counts[unit] += 1
            if score.ingested_at is not None:
                ts = score.ingested_at.timestamp()
                if ts > newest.get(unit, 0.0):
                    newest[unit] = ts
        for unit, n in counts.items():
            self.unit_records.labels(unit).inc(n)
        for unit, ts in newest.items():
            self.unit_last_seen.labels(unit).set(ts)
        for patient, (partition, state) in states.items():
            active = tuple((kind, track.severity or "medium")
                           for kind, track in state.alerts.items() if track.active)
            self.census.update(patient, partition, self.unit_label(state.unit), active, now_s)

    def observe_consumer(self, assignment: Iterable[Any], highwater: Callable[[Any], int | None],
                         committed: Callable[[Any], int | None]) -> None:
        """Set ``vigil_consumer_lag_records`` for the current assignment (at scrape time).

        ``assignment`` holds faust ``TP`` tuples; ``highwater`` is the consumer's highwater
        from fetch responses (None before the first fetch of a partition), ``committed``
        the next offset the group will read from (None before its first commit: the log
        is then counted from offset 0).
        """
        self.consumer_lag.clear()  # partitions that moved to another worker disappear
        for tp in assignment:
            try:
                high = highwater(tp)
            except (AssertionError, KeyError, RuntimeError):  # mid-rebalance
                continue
            if high is None:
                continue
            lag = max(0, high - (committed(tp) or 0))
            self.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    def publish_census(self, partitions: Iterable[int] | None, now_s: float) -> None:
        """Set the per-unit load gauges from the census (at scrape time)."""
        self.census.prune(partitions, now_s)
        self.unit_patients.clear()
        self.unit_patients_at_risk.clear()
        patients, at_risk = self.census.counts()
        for unit, n in patients.items():
            self.unit_patients.labels(unit).set(n)
        for (unit, kind, severity), n in at_risk.items():
            self.unit_patients_at_risk.labels(unit, kind, severity).set(n)


class UnitCensus:
    """Which patients of this worker's partitions are in which unit, and which alert.

    Fed from the patient states a batch touched: a restarted worker (or one that took over
    a partition) knows a patient again at its next record, typically within the hour.
    Held in memory only, keyed by pseudonym; only counts per unit leave it.
    """

    def __init__(self, horizon_s: float = CENSUS_HORIZON_S) -> None:
        self.horizon_s = horizon_s
        # pseudonym -> (partition, unit label, active (kind, severity) pairs, last seen)
        self.patients: dict[str, tuple[int, str, tuple[tuple[str, str], ...], float]] = {}

    def update(self, patient: str, partition: int, unit: str,
               active: tuple[tuple[str, str], ...], now_s: float) -> None:
        self.patients[patient] = (partition, unit, active, now_s)

    def prune(self, partitions: Iterable[int] | None, now_s: float) -> None:
        """Forget patients not seen within the horizon (discharged, or their feed stopped)
        and those of partitions no longer assigned here (another worker counts them)."""
        keep = None if partitions is None else set(partitions)
        cutoff = now_s - self.horizon_s
        self.patients = {p: v for p, v in self.patients.items()
                         if v[3] >= cutoff and (keep is None or v[0] in keep)}

    def counts(self) -> tuple[dict[str, int], dict[tuple[str, str, str], int]]:
        patients: dict[str, int] = defaultdict(int)
        at_risk: dict[tuple[str, str, str], int] = defaultdict(int)
        for _, unit, active, _ in self.patients.values():
            patients[unit] += 1
            for kind, severity in active:
                at_risk[(unit, kind, severity)] += 1
        return dict(patients), dict(at_risk)


class _JaxCompilations:
    """XLA compilations of this process, counted from JAX's own monitoring events.

    JAX reports every backend compilation (``/jax/core/compile/backend_compile_duration``),
    whatever triggered it: a new batch shape, a new dtype, a retrace. Counting those, not
    our own calls, is what catches an unexpected recompilation in the stream. One count per
    process (JAX's listeners are global), exported by every registry that asks for it.
    """

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.watching = False
        self._lock = threading.Lock()

    def watch(self) -> None:
        """Start counting; call before the first jitted call. Idempotent."""
        with self._lock:
            if self.watching:
                return
            import jax.monitoring

            jax.monitoring.register_event_duration_secs_listener(self._on_event)
            self.watching = True

    def _on_event(self, event: str, duration_s: float, **kwargs: object) -> None:
        if event == self.EVENT:
            with self._lock:
                self.count += 1
                self.seconds += duration_s

    def collect(self) -> Iterator[CounterMetricFamily]:
        with self._lock:
            count, seconds = self.count, self.seconds
        yield CounterMetricFamily(
            "vigil_jax_compilations",
            "XLA compilations in this process (JAX monitoring events). The worker compiles "
            "its model at start-up; an increase afterwards means a new shape was traced in "
            "the stream.", value=count)
        yield CounterMetricFamily("vigil_jax_compilation_seconds",
                                  "Wall time spent in XLA compilations.", value=seconds)

    def describe(self) -> list[CounterMetricFamily]:
        return list(self.collect())


JAX_COMPILATIONS = _JaxCompilations()


def watch_jax_compilations() -> None:
    """Count this process's XLA compilations in ``vigil_jax_compilations_total``."""
    JAX_COMPILATIONS.watch()


def registry_jax_compilations(registry: CollectorRegistry) -> None:
    registry.register(JAX_COMPILATIONS)
