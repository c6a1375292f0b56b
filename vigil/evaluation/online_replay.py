"""Online learning replayed three ways, to split what the online model gains and from whom.

:func:`vigil.models.online.replay_online` (the replay behind today's figures) runs patients
one after another: every earlier stay's labels are in before the next stay starts, and a
patient's own labels are learned 6 h after each hour, so from sepsis onset on the model has
learned that very patient's positive hours. Two questions follow, answered here:

* *What does it learn from other patients* (adaptation to the unit) *and what from the same
  patient after diagnosis?* :func:`replay_online_withheld` withholds each patient's own
  labels until its stay ends: its predictions can only use what other patients taught.
* *What does the stream actually learn?* In a unit stays overlap; the stream learns a label
  when the labels topic delivers it, in event time. :func:`replay_online_event_time`
  interleaves patients on the replay's own timeline (the admission stagger of
  :class:`vigil.stream.replay.timeline.Timeline`, labels known when the replay emits them),
  with one model per vitals partition, as the workers keep them.

All replays predict an hour before anything from that hour is learned and work on copies:
the model passed in is never changed.
"""

from __future__ import annotations

import numpy as np

from vigil.models.online import OnlineModel, replay_online
from vigil.stream.offline import partition_of
from vigil.stream.replay.physionet2019 import LABEL_SHIFT_H
from vigil.stream.replay.stays import Stay
from vigil.stream.replay.timeline import Timeline
from vigil.wire.durations import HOUR_MS

__all__ = ["label_known_hours", "replay_online", "replay_online_event_time",
           "replay_online_events", "replay_online_withheld", "replay_outcomes_event_time",
           "stream_placement"]


def _bounds(patient: np.ndarray) -> np.ndarray:
    return np.r_[0, np.flatnonzero(np.diff(patient)) + 1, len(patient)]


def replay_online_withheld(model: OnlineModel, Z: np.ndarray, labels: np.ndarray,
                           patient: np.ndarray) -> np.ndarray:
    """Patients one after another, each patient's own labels withheld until its stay ends.

    Every hour of a stay is predicted by a model that has learned all earlier stays and
    nothing of this one; the stay's labels are learned (in hour order) after its last hour.
    What this replay gains over the warm start is adaptation to the unit, never knowledge of
    the same patient's diagnosis.
    """
    m = OnlineModel.loads(model.dumps())
    out = np.empty(len(Z))
    bounds = _bounds(patient)
    for a, b in zip(bounds[:-1], bounds[1:]):
        out[a:b] = m.predict(Z[a:b])
        for k in range(a, b):
            m.learn(Z[k], int(labels[k]))
    return out


def replay_online_events(model: OnlineModel, Z: np.ndarray, labels: np.ndarray,
                         predict_at: np.ndarray, learn_at: np.ndarray,
                         group: np.ndarray | None = None,
                         learned: np.ndarray | None = None) -> np.ndarray:
    """Predict each row at ``predict_at`` and learn its label at ``learn_at`` (same units).

    Events run in time order; on a tie predictions come first (the stream scores a vitals
    record before a label with the same time: :meth:`Timeline.__iter__`), then row order.
    ``group`` (per row) gives each group its own model, all starting from ``model``: the
    stream keeps one River model per vitals partition. ``learned`` (a row mask) limits
    learning to the rows a label describes (default every row): a stay's outcome label
    describes its last hour only.
    """
    n = len(Z)
    if group is None:
        group = np.zeros(n, np.int64)
    learn_rows = np.arange(n) if learned is None else np.flatnonzero(learned)
    times = np.r_[np.asarray(predict_at, np.float64),
                  np.asarray(learn_at, np.float64)[learn_rows]]
    kind = np.r_[np.zeros(n, np.int8), np.ones(len(learn_rows), np.int8)]
    rows = np.r_[np.arange(n), learn_rows]
    order = np.lexsort((rows, kind, times))
    warm = model.dumps()
    models = {int(g): OnlineModel.loads(warm) for g in np.unique(group)}
    out = np.empty(n)
    for e in order:
        k = rows[e]
        m = models[int(group[k])]
        if kind[e] == 0:
            out[k] = m.predict(Z[k:k + 1])[0]
        else:
            m.learn(Z[k], int(labels[k]))
    return out


def label_known_hours(labels: np.ndarray, hours: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """When the replay's labels topic delivers each hour's label, in hours since admission.

    The same rule as :func:`vigil.stream.replay.physionet2019` applies to each stay: a
    negative hour is known ``LABEL_SHIFT_H`` (6 h) later, a positive hour at clinical onset
    (first positive label + 6 h; Reyna et al., Crit Care Med 2020;48:210) or at once when it
    is after onset, and nothing later than the stay's last hour.
    """
    hours = np.asarray(hours, np.float64)
    known = np.empty(len(hours))
    bounds = _bounds(patient)
    for a, b in zip(bounds[:-1], bounds[1:]):
        h, lab = hours[a:b], np.asarray(labels[a:b]).astype(bool)
        end = h.max()
        k = h + LABEL_SHIFT_H
        if lab.any():
            onset = h[np.argmax(lab)] + LABEL_SHIFT_H
            k = np.where(lab, np.maximum(h, onset), k)
        known[a:b] = np.minimum(k, end)
    return known


def stream_placement(source_ids: list[str], datasets: list[str], pseudonym_key: str, *,
                     stagger_hours: float = 24.0, partitions: int = 1
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(admission offset in hours, vitals partition) of each stay, as the replay places it.

    The offsets are :class:`Timeline`'s own (deterministic per stay, within
    ``stagger_hours``); the partition is that of the stay's pseudonymised key, so each
    patient is scored and learned by the model of the partition it lands in.
    """
    stays = [Stay(dataset=d, source_id=s, unit="", age_years=None, sex=None,
                  hospital_admit_hours=None) for s, d in zip(source_ids, datasets)]
    timeline = Timeline(stays, pseudonym_key, now_ms=0, stagger_hours=stagger_hours)
    admit = np.asarray(timeline.admit_offsets_ms, np.float64) / HOUR_MS
    part = np.array([partition_of(timeline.patient_key(s), partitions) for s in stays], np.int64)
    return admit, part


def replay_online_event_time(model: OnlineModel, Z: np.ndarray, labels: np.ndarray,
                             patient: np.ndarray, hours: np.ndarray, admit_hours: np.ndarray,
                             *, known_hours: np.ndarray | None = None,
                             partition: np.ndarray | None = None,
                             withhold_own: bool = False) -> np.ndarray:
    """Online learning in event time across overlapping stays, as the stream sees them.

    Row ``k`` is predicted at ``admit_hours[patient[k]] + hours[k]`` and its label learned at
    the stay's admission + ``known_hours[k]`` (default :func:`label_known_hours`, the
    replay's own delivery times). ``partition`` (per patient) gives each partition its own
    model. With ``withhold_own`` a stay's labels are learned only after its last hour, so
    only other patients' labels reach its predictions.
    """
    hours = np.asarray(hours, np.float64)
    admit = np.asarray(admit_hours, np.float64)[patient]
    if known_hours is None:
        known_hours = label_known_hours(labels, hours, patient)
    learn = admit + np.asarray(known_hours, np.float64)
    if withhold_own:
        bounds = _bounds(patient)
        for a, b in zip(bounds[:-1], bounds[1:]):
            learn[a:b] = np.maximum(learn[a:b], admit[a] + hours[a:b].max())
    group = None if partition is None else np.asarray(partition)[patient]
    return replay_online_events(model, Z, labels, admit + hours, learn, group)


def replay_outcomes_event_time(model: OnlineModel, Z: np.ndarray, labels: np.ndarray,
                               patient: np.ndarray, hours: np.ndarray,
                               admit_hours: np.ndarray,
                               partition: np.ndarray | None = None,
                               known_after_h: float = 0.0) -> np.ndarray:
    """Online learning of stay outcomes (PhysioNet 2012 death) as the stream sees them.

    The replay emits one label per stay describing its last record, known when the record
    closes (``known_after_h`` since admission, at the earliest the last record:
    :mod:`vigil.stream.replay.physionet2012`); the worker featurizes that record and the
    partition's model learns it. Stays overlap on the replay's timeline, so a stay is
    scored by a model that knows the outcomes of the stays that closed before each record.
    """
    hours = np.asarray(hours, np.float64)
    admit = np.asarray(admit_hours, np.float64)[patient]
    at = admit + hours
    ends = _bounds(patient)[1:] - 1
    last = np.zeros(len(Z), bool)
    last[ends] = True
    known = at.copy()
    known[ends] = admit[ends] + np.maximum(hours[ends], known_after_h)
    group = None if partition is None else np.asarray(partition)[patient]
    return replay_online_events(model, Z, labels, at, known, group, learned=last)
