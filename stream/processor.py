"""The body of the vitals agent, free of faust: one batch of raw records in, outputs out.

Keeping it apart from the engine lets unit tests drive every rule without a broker, and
lets evaluation replay the exact production path. Per batch:

1. validate each record at the door (stateless), group by patient;
2. per patient, in offset order: skip redeliveries, apply late/duplicate rules and the
   windows, and compute the feature row at the record's event time;
3. score all rows with every scorer in fixed-shape batches;
4. per row: a score record, and per alert kind a lifecycle step that may emit an alert.

All mutation of a patient's state happens here, synchronously, so the agent can publish
the outputs, wait for the broker to have them, and only then write each touched state once
to the changelogged table: a crash in between re-processes the batch, and deterministic ids
make the repeated outputs harmless (at-least-once, idempotent).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec
import numpy as np

from vigil.alerts import explain
from vigil.alerts.lifecycle import Rules, Transition, acknowledge, alert_id, overdue, step
from vigil.alerts.policy import Policy
from vigil.kinds import ActiveKind, AlertKind, deploy, kind_named
from vigil.models.base import (
    Assessment,
    Context,
    Learner,
    Scorer,
    is_learner,
    padded_chunks,
    score_chunks,
)
from vigil.models.clinical import ClinicalInputs, clinical_details
from vigil.settings import VigilSettings
from vigil.stream.features import FeatureSpec
from vigil.stream.validation import Accepted, Refused, validate
from vigil.stream.windows import WindowSpec, admit
from vigil.wire.consumed import InRecord, dead_letter, short_error
from vigil.wire.durations import dt_to_ms, ms_to_dt
from vigil.wire.records import (
    ACK_DECODER,
    AlertEvent,
    DeadLetter,
    Driver,
    LabelRecord,
    Rejection,
    ScoreRecord,
    decode_wire,
)
from vigil.wire.state import AlertTrack, PatientState, copy_track

__all__ = ["InRecord", "BatchResult", "Processor", "CLINICAL_KEYS", "build_processor",
           "dead_letter"]

log = logging.getLogger(__name__)

#: the published scores every score record carries, whichever kinds are deployed
CLINICAL_KEYS = ("news2", "news2_missing", "qsofa", "sirs", "shock_index")


@dataclass
class BatchResult:
    scores: list[tuple[str, ScoreRecord]] = field(default_factory=list)
    alerts: list[tuple[str, AlertEvent]] = field(default_factory=list)
    dead: list[tuple[str | None, DeadLetter]] = field(default_factory=list)
    states: dict[str, tuple[int, PatientState]] = field(default_factory=dict)
    outcomes: Counter = field(default_factory=Counter)  # accepted / partial / rejected / redelivered
    reasons: Counter = field(default_factory=Counter)  # rejection reasons (records and observations)
    ingest_lag_s: list[float] = field(default_factory=list)  # Kafka timestamp -> processed
    scored_rows: int = 0
    risks: dict[str, list[float]] = field(default_factory=dict)  # kind -> every row's risk
    suppressed: Counter = field(default_factory=Counter)  # (kind, cause) of silent crossings
    escalations: Counter = field(default_factory=Counter)  # (kind, cause)

    def merge(self, later: BatchResult) -> None:
        """Add the result of the next part of the same batch (the batch is processed in
        parts where queued labels are learned in between; see vigil.stream.label_queue)."""
        self.scores += later.scores
        self.alerts += later.alerts
        self.dead += later.dead
        self.states.update(later.states)
        self.outcomes.update(later.outcomes)
        self.reasons.update(later.reasons)
        self.ingest_lag_s += later.ingest_lag_s
        self.scored_rows += later.scored_rows
        for kind, risks in later.risks.items():
            self.risks.setdefault(kind, []).extend(risks)
        self.suppressed.update(later.suppressed)
        self.escalations.update(later.escalations)


@dataclass
class AckResult:
    """One acknowledgement applied: its outcome, and what to publish because of it."""

    outcome: str  # acknowledged | already_acknowledged | not_active | unknown_alert | rejected
    kind: str | None = None
    patient: str | None = None
    state: PatientState | None = None  # changed state to store (only when acknowledged)
    alert: AlertEvent | None = None
    dead: DeadLetter | None = None
    seconds_to_ack: float | None = None


def _digest(*parts: str) -> str:
    return hashlib.blake2b("|".join(parts).encode(), digest_size=12).hexdigest()


@dataclass
class _Row:
    patient: str
    rec: InRecord
    acc: Accepted
    features: list[float]


class Processor:
    """Turns batches of vitals records into scores, alerts and dead letters.

    ``kinds`` are the alert kinds this worker runs (:func:`vigil.kinds.deploy`); a bare
    scorer stands for the registered kind it predicts, with that scorer's own levels (unit
    tests). Every kind is handled the same way: nothing here names one.
    """

    def __init__(
        self,
        windows: WindowSpec,
        kinds: Sequence[ActiveKind | Scorer],
        *,
        score_batch_size: int = 64,
        max_clock_skew_ms: int = 300_000,
        rules: Rules | None = None,
    ) -> None:
        self.windows = windows
        self.features = FeatureSpec(windows)
        active = [k if isinstance(k, ActiveKind) else _bare(k, rules) for k in kinds]
        for a in active:
            if tuple(a.scorer.feature_names) != self.features.names:
                raise ValueError(f"scorer {a.scorer.name} was built for another feature schema")
        self.kinds: dict[str, ActiveKind] = {a.name: a for a in active}
        if len(self.kinds) != len(active):
            raise ValueError("two deployed alert kinds share a name")
        self.score_batch_size = score_batch_size
        self.max_clock_skew_ms = max_clock_skew_ms
        self.clinical = ClinicalInputs(self.features.names)

    @property
    def scorers(self) -> dict[str, Scorer]:
        return {name: a.scorer for name, a in self.kinds.items()}

    @property
    def policies(self) -> dict[str, Policy]:
        return {name: a.policy for name, a in self.kinds.items()}

    @property
    def names(self) -> dict[str, str]:
        """Each kind's scorer, by name (published with every score and alert)."""
        return {name: a.scorer.name for name, a in self.kinds.items()}

    @property
    def learners(self) -> list[Learner]:
        return [a.scorer for a in self.kinds.values() if is_learner(a.scorer)]  # type: ignore[misc]

    def warm_up(self) -> float:
        """Run every scorer once at the stream's batch shape; returns the seconds it took.

        A jitted model compiles on its first call (seconds for the circuit): doing that at
        start-up keeps it out of the first alert's latency, and /health turns ready only
        after it.
        """
        started = time.perf_counter()
        blank = np.full((self.score_batch_size, len(self.features.names)), np.nan)
        for scorer in self.scorers.values():
            scorer.score_batch(blank)
            scorer.attribute(blank)
        return time.perf_counter() - started

    # ------------------------------------------------------------------------------------
    def process(self, batch: list[InRecord], get_state: Callable[[str], PatientState | None],
                now_ms: int, get_blob: Callable[[bytes], bytes | None] | None = None
                ) -> BatchResult:
        """Process one batch; ``get_blob`` reads table entries such as online models."""
        res = BatchResult()
        by_patient: dict[str, list[tuple[InRecord, Accepted]]] = {}
        for rec in batch:
            try:
                out = validate(rec.value, now_ms, self.max_clock_skew_ms)
            except Exception as exc:  # a bug must not kill the worker: dead-letter it
                log.exception("validation crashed at %s[%d]@%d", rec.topic, rec.partition, rec.offset)
                out = Refused([Rejection("internal_error", short_error(exc))])
            if isinstance(out, Refused):
                self._dead(res, rec, "record", out.rejections, out.patient, now_ms)
                continue
            key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
            if key != out.record.patient:
                self._dead(res, rec, "record", [Rejection(
                    "key_mismatch", "the Kafka key must be the record's patient key so that "
                    "all of a patient's records share one partition and one state")],
                    out.record.patient, now_ms)
                continue
            by_patient.setdefault(out.record.patient, []).append((rec, out))

        rows: list[_Row] = []
        for patient, items in by_patient.items():
            state = get_state(patient)
            if state is None:
                state = PatientState()
            touched = False
            for rec, acc in sorted(items, key=lambda it: it[0].offset):
                if rec.partition != state.partition:
                    if state.partition >= 0:  # the topic was repartitioned: offsets restart
                        log.warning("a patient moved from partition %d to %d: redelivery guard "
                                    "reset", state.partition, rec.partition)
                    state.partition, state.offset = rec.partition, -1
                elif rec.offset <= state.offset:
                    res.outcomes["redelivered"] += 1  # already applied before a restart
                    continue
                try:
                    rejection = admit(state, acc, self.windows)
                    feats = None if rejection else self.features.featurize(state, acc.event_ms)
                except Exception as exc:
                    log.exception("windowing crashed at %s[%d]@%d", rec.topic, rec.partition,
                                  rec.offset)
                    rejection, feats = Rejection("internal_error", short_error(exc)), None
                state.offset = rec.offset
                touched = True
                if rejection is not None:
                    self._dead(res, rec, "record", [rejection, *acc.rejections], patient, now_ms)
                    continue
                if acc.rejections:
                    self._dead(res, rec, "observations", acc.rejections, patient, now_ms)
                    res.outcomes["partial"] += 1
                res.outcomes["accepted"] += 1
                state.ingest_lag_ms = rec.timestamp_ms - acc.event_ms
                rows.append(_Row(patient, rec, acc, feats))
            if touched:
                state.processed_at_ms = now_ms
                res.states[patient] = (items[0][0].partition, state)

        if rows:
            self._score(rows, res, now_ms, get_blob)
        return res

    # ------------------------------------------------------------------------------------
    def _score(self, rows: list[_Row], res: BatchResult, now_ms: int,
               get_blob: Callable[[bytes], bytes | None] | None = None) -> None:
        """Score the batch's rows with every kind, then per row: a score record and each
        kind's lifecycle step; the transitions become explained alert events."""
        X = self.features.matrix([r.features for r in rows])
        try:
            assessed, details = self._assess(X, rows, get_blob)
        except Exception as exc:  # a failing model must not stop the stream silently
            log.exception("scoring failed for a batch of %d rows", len(rows))
            res.outcomes["accepted"] -= len(rows)
            for row in rows:
                self._dead(res, row.rec, "record", [Rejection(
                    "internal_error", f"scoring failed: {short_error(exc)}")], row.patient, now_ms)
            return
        res.scored_rows += len(rows)
        pending: list[tuple[int, str, Transition, float, AlertTrack]] = []  # to explain
        for i, row in enumerate(rows):
            state = res.states[row.patient][1]
            res.scores.append((row.patient, self._score_record(row, state, i, assessed,
                                                               details)))
            res.ingest_lag_s.append(max(0.0, (now_ms - row.rec.timestamp_ms) / 1000))
            for kind, a in assessed.items():
                found = self._step(kind, float(a.risk[i]), details, i, state, row.acc.event_ms,
                                   res)
                if found is not None:
                    pending.append((i, kind, *found))
        for kind, a in assessed.items():
            res.risks.setdefault(kind, []).extend(float(r) for r in a.risk if r == r)
        if pending:
            self._alerts(rows, X, assessed, details, pending, res, now_ms)

    def _assess(self, X: np.ndarray, rows: list[_Row],
                get_blob: Callable[[bytes], bytes | None] | None
                ) -> tuple[dict[str, Assessment], dict[str, np.ndarray]]:
        """Every kind's assessment of ``X`` in fixed-shape chunks, and the per-row details
        (the clinical scores, computed once for everyone, and each scorer's own)."""
        clinical = clinical_details(self.clinical, X)
        context = Context(np.fromiter((r.rec.partition for r in rows), int, len(rows)),
                          get_blob, clinical)
        chunks = padded_chunks(X, self.score_batch_size)  # shared by every scorer
        assessed = {kind: score_chunks(a.scorer, chunks, X.shape[1], self.score_batch_size,
                                       context)
                    for kind, a in self.kinds.items()}
        details = {**clinical, **{k: v for a in assessed.values() for k, v in a.details.items()}}
        return assessed, details

    def _score_record(self, row: _Row, state: PatientState, i: int,
                      assessed: dict[str, Assessment],
                      details: dict[str, np.ndarray]) -> ScoreRecord:
        acc = row.acc
        return ScoreRecord(
            score_id=_digest(row.patient, acc.record_id),
            patient=row.patient,
            event_time=ms_to_dt(acc.event_ms),
            record_id=acc.record_id,
            risks={k: float(a.risk[i]) for k, a in assessed.items()},
            scorers=self.names,
            clinical={k: _num(details[k][i]) for k in CLINICAL_KEYS if k in details},
            unit=state.unit,
            bed=state.bed,
            ingested_at=ms_to_dt(row.rec.timestamp_ms),
        )

    def _step(self, kind: str, risk: float, details: dict[str, np.ndarray], i: int,
              state: PatientState, event_ms: int, res: BatchResult
              ) -> tuple[Transition, float, AlertTrack] | None:
        """One row through one kind's lifecycle; a transition to publish, with a snapshot
        of the track (later rows of the batch may move it on)."""
        active = self.kinds[kind]
        policy = active.policy
        flag = float(details[policy.floor_flag][i]) if policy.floor_flag else 0.0
        track = state.alerts.setdefault(kind, AlertTrack())
        transition = step(track, policy.severity(risk, flag), policy.below_clear(risk, flag),
                          event_ms, active.rules, risk, flag > 0)
        if transition is None:
            return None
        if transition.state == "suppressed":
            res.suppressed[(kind, transition.cause)] += 1
            return None
        if transition.state == "escalated":
            res.escalations[(kind, transition.cause)] += 1
        return transition, risk, copy_track(track)

    def _alerts(self, rows: list[_Row], X: np.ndarray, assessed: dict[str, Assessment],
                details: dict[str, np.ndarray], pending: list, res: BatchResult,
                now_ms: int) -> None:
        """Alert events for a batch's transitions, explained by their drivers.

        Only these rows need attributions; for a model they cost a gradient, so they are
        computed here, per alert kind, in fixed-shape padded chunks.
        """
        names = self.features.names
        contributions: dict[tuple[int, str], np.ndarray] = {}
        for kind in {k for _, k, _, _, _ in pending}:
            idx = sorted({i for i, k, _, _, _ in pending if k == kind})
            a = assessed[kind]
            if a.contributions is not None:
                block = a.contributions[idx]
            else:
                block = np.vstack([self.scorers[kind].attribute(chunk)[:m]
                                   for chunk, m in padded_chunks(X[idx], self.score_batch_size)])
            contributions.update({(i, kind): block[j] for j, i in enumerate(idx)})
        for i, kind, transition, risk, track in pending:
            row = rows[i]
            acc = row.acc
            state = res.states[row.patient][1]
            active = self.kinds[kind]
            policy = active.policy
            head = active.headline(risk, {k: float(v[i]) for k, v in details.items()})
            found = explain.drivers(names, X[i], contributions[(i, kind)])
            res.alerts.append((row.patient, self._event(
                row.patient, kind, track, state, transition.state, acc.event_ms, now_ms,
                acc.record_id,
                summary=(explain.summary(head, found) if transition.state != "resolved"
                         else explain.resolved(head, active.rules.clear_after_ms)),
                transition_reason=explain.transition(
                    transition.state, transition.cause, track.severity, risk,
                    policy.threshold_for(track.severity), policy.clear_level, active.rules),
                risk=risk, reasons=found, ingested_at=ms_to_dt(row.rec.timestamp_ms))))

    def _event(self, patient: str, kind: str, track: AlertTrack, state: PatientState,
               transition: str, event_ms: int, now_ms: int, record_id: str, *, summary: str,
               transition_reason: str, risk: float | None = None,
               reasons: list[Driver] | None = None, event_time: datetime | None = None,
               **extra: object) -> AlertEvent:
        """The alerts topic's record of one transition of ``track`` (a scored row's, an
        acknowledgement's or the sweep's); ``risk`` defaults to the track's latest."""
        aid = alert_id(patient, kind, track.episode_start_ms)
        if risk is None:
            risk = track.trend[-1] if track.trend else float("nan")
        return AlertEvent(
            alert_id=aid,
            event_id=f"{aid}:{transition}:{event_ms}",
            patient=patient,
            kind=kind,  # type: ignore[arg-type]
            severity=track.severity or "medium",  # type: ignore[arg-type]
            state=transition,  # type: ignore[arg-type]
            risk=risk,
            threshold=self.kinds[kind].policy.threshold_for(track.severity),
            reasons=reasons or [],
            summary=summary,
            scorer=self.kinds[kind].scorer.name,
            event_time=event_time or ms_to_dt(event_ms),
            published_at=ms_to_dt(now_ms),
            episode_start=ms_to_dt(track.episode_start_ms),
            record_id=record_id,
            unit=state.unit,
            bed=state.bed,
            transition_reason=transition_reason,
            trend=track.trend,
            **extra,  # type: ignore[arg-type]
        )

    def acknowledge(self, rec: InRecord, get_state: Callable[[str], PatientState | None],
                    now_ms: int) -> AckResult:
        """Apply one record of the acks topic to its patient's alert track.

        An acknowledged alert stops escalating and is announced on the alerts topic (the
        board and other consumers see who acknowledged it). Acks that cannot apply are
        counted; unreadable ones and acks of alerts this worker never raised go to the DLQ,
        since a nurse believes she acknowledged something.
        """
        ack = decode_wire(ACK_DECODER, rec.value)
        if isinstance(ack, Rejection):
            return AckResult("rejected", dead=dead_letter(rec, "record", [ack], now_ms))
        if rec.key is not None and rec.key != ack.patient.encode():
            return AckResult("rejected", ack.kind, ack.patient, dead=dead_letter(
                rec, "record", [Rejection("key_mismatch", "record key is not the ack's patient")],
                now_ms))
        state = get_state(ack.patient)
        track = state.alerts.get(ack.kind) if state is not None else None
        current = (alert_id(ack.patient, ack.kind, track.episode_start_ms)
                   if track is not None and track.episodes else None)
        ack_ms = dt_to_ms(ack.acked_at)
        by = ack.by or "unknown"
        if track is not None:
            track = copy_track(track)
        outcome = acknowledge(track, current, ack.alert_id, ack_ms, by)
        if outcome == "unknown_alert":
            return AckResult(outcome, ack.kind, ack.patient, dead=dead_letter(rec, "record", [
                Rejection("unknown_alert", f"no current {ack.kind} alert {ack.alert_id} for this "
                          "patient on this worker")], now_ms))
        if outcome != "acknowledged":
            return AckResult(outcome, ack.kind, ack.patient)
        assert state is not None and track is not None and current is not None
        new_state = msgspec.structs.replace(state, alerts={**state.alerts, ack.kind: track})
        alert = self._event(
            ack.patient, ack.kind, track, state, "acknowledged", ack_ms, now_ms,
            f"{rec.topic}:{rec.partition}:{rec.offset}", summary=f"Acknowledged by {by}",
            transition_reason=f"acknowledged by {by}", event_time=ack.acked_at,
            acknowledged_by=by, acknowledged_at=ack.acked_at)
        return AckResult(outcome, ack.kind, ack.patient, new_state, alert,
                         seconds_to_ack=max(0.0, (ack_ms - track.ack_due_from_ms) / 1000))

    @staticmethod
    def expired(state: PatientState, now_ms: int, ttl_ms: int) -> bool:
        """A patient nobody has sent anything about for ``ttl_ms`` (discharged, transferred)
        and with no active alert: its state can go, or the table would grow for ever.

        >>> s = PatientState(processed_at_ms=0)
        >>> Processor.expired(s, 10, 5), Processor.expired(s, 4, 5)
        (True, False)
        """
        return (state.processed_at_ms >= 0 and now_ms - state.processed_at_ms >= ttl_ms
                and not any(t.active for t in state.alerts.values()))

    def sweep(self, patient: str, state: PatientState, now_ms: int,
              live_lag_ms: int) -> tuple[list[AlertEvent], PatientState | None]:
        """Escalate this patient's unacknowledged alerts by the wall clock (see
        :func:`~vigil.alerts.lifecycle.overdue`); returns the events and the changed state.

        Only for a live feed (its newest record reached Kafka within ``live_lag_ms`` of its
        event time): a replay of old data keeps event-time semantics, so replays stay
        deterministic. The escalation is stamped at the time it fell due, not at the sweep,
        so a restarted worker that sweeps again derives the same event id.
        """
        if state.ingest_lag_ms is None or state.ingest_lag_ms > live_lag_ms:
            return [], None
        events: list[AlertEvent] = []
        new_alerts = dict(state.alerts)
        for kind, track in state.alerts.items():
            if kind not in self.kinds:
                continue
            rules = self.kinds[kind].rules
            copy = copy_track(track)
            transition = overdue(copy, now_ms, rules)
            if transition is None:
                continue
            new_alerts[kind] = copy
            due_ms = copy.ack_due_from_ms + rules.escalate_after_ms
            quiet_min = max(0, (now_ms - state.watermark_ms) // 60_000)
            events.append(self._event(
                patient, kind, copy, state, "escalated", due_ms, now_ms, f"sweep:{due_ms}",
                summary=f"Unacknowledged; no new vitals for {quiet_min} min",
                transition_reason=explain.transition("escalated", "unacknowledged",
                                                     copy.severity, float("nan"), 0.0, 0.0,
                                                     rules)))
        if not events:
            return [], None
        return events, msgspec.structs.replace(state, alerts=new_alerts)

    def unlearnable(self, kind: str) -> str | None:
        """Why no model here would learn a label of ``kind`` (its outcome), or None."""
        learners = self.learners
        if not learners:
            return "no_online_model"
        if not any(m.learns_from == kind for m in learners):
            return "other_kind"
        return None

    def learn(self, label: LabelRecord, state: PatientState | None, partition: int,
              read: Callable[[bytes], bytes | None] | None = None) -> str:
        """Let every scorer that learns this label's kind learn it; returns the outcome.

        The label's hour is featurized from the patient's window state with the one feature
        function, so the model learns exactly what it scored. :meth:`take_state` then gives
        the changed models to store.
        """
        refused = self.unlearnable(label.kind)
        if refused is not None:
            return refused
        mine = [m for m in self.learners if m.learns_from == label.kind]
        if state is None:
            return "unknown_patient"
        at_ms = dt_to_ms(label.event_time)
        if at_ms > state.watermark_ms:
            return "ahead_of_vitals"  # the hour it describes has not been seen yet
        if at_ms < state.watermark_ms - self.windows.horizon_ms + self.windows.lengths_ms[-1]:
            return "too_old"  # its window history is gone: learning from it would be wrong
        x = np.asarray(self.features.featurize(state, at_ms), float)
        for m in mine:
            m.learn(x, label.label, partition, read)
        return "learned"

    def take_state(self) -> list[tuple[int, bytes, bytes]]:
        """(partition, table key, bytes) of every model that learned since the last call."""
        return [entry for m in self.learners for entry in m.take_state()]

    def _dead(self, res: BatchResult, rec: InRecord, scope: str, rejections: list[Rejection],
              patient: str | None, now_ms: int) -> None:
        if scope == "record":
            res.outcomes["rejected"] += 1
        for r in rejections:
            res.reasons[r.reason] += 1
        res.dead.append((patient, dead_letter(rec, scope, rejections, now_ms)))


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _bare(scorer: Scorer, rules: Rules | None) -> ActiveKind:
    """A bare scorer as the registered kind it predicts (or a plain kind of that name)."""
    try:
        kind = kind_named(scorer.target)
    except KeyError:
        kind = AlertKind(scorer.target, scorer.target.title(), lambda s, n: scorer)
    return kind.activate(scorer, rules=rules)


def build_processor(settings: VigilSettings) -> Processor:
    """The processor a worker runs: every registered kind deployed from settings."""
    windows = WindowSpec.from_seconds(settings.window_lengths_s, settings.allowed_lateness_s,
                                      settings.label_delay_s)
    return Processor(windows, deploy(settings, FeatureSpec(windows).names),
                     score_batch_size=settings.score_batch_size,
                     max_clock_skew_ms=settings.max_clock_skew_s * 1000)
