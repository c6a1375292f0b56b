"""Produces a :class:`~vigil.stream.replay.timeline.Timeline` to Kafka at a chosen speed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vigil.settings import VigilSettings
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.stays import Stay
from vigil.stream.replay.timeline import Timeline

__all__ = ["ReplayStats", "replay_path", "replay_stays", "replay_timeline"]


@dataclass
class ReplayStats:
    patients: int = 0
    septic_patients: int = 0
    vitals: int = 0
    labels: int = 0
    observations: int = 0
    unmapped_values: int = 0
    seconds: float = 0.0
    datasets: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["records_per_s"] = round(self.vitals / self.seconds, 1) if self.seconds else None
        return d


def replay_stays(settings: VigilSettings, stays: list[Stay], *, stagger_hours: float = 24.0,
                 **kwargs) -> ReplayStats:
    timeline = Timeline(stays, settings.pseudonym_key.get_secret_value(),
                        now_ms=int(time.time() * 1000), stagger_hours=stagger_hours)
    return replay_timeline(settings, timeline, **kwargs)


def replay_timeline(settings: VigilSettings, timeline: Timeline, *, speed: float = 0.0,
                    progress: bool = True, include_labels: bool = True,
                    stop: Callable[[], bool] | None = None,
                    on_vitals: Callable[[int], None] | None = None) -> ReplayStats:
    """Send every record of ``timeline`` in event-time order; ``speed`` 0 means no pacing.

    Each record is keyed by the patient's pseudonym, so all of a patient's records share a
    partition and arrive in order.
    """
    from kafka import KafkaProducer

    stays = timeline.stays
    stats = ReplayStats(patients=len(stays), septic_patients=sum(s.septic for s in stays),
                        unmapped_values=sum(s.unmapped for s in stays))
    for s in stays:
        stats.datasets[s.dataset] = stats.datasets.get(s.dataset, 0) + 1
    topics = {"vitals": settings.topic_vitals, "labels": settings.topic_labels}
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                             linger_ms=5, client_id="vigil-replay")
    total = timeline.n_vitals + (timeline.n_labels if include_labels else 0)
    bar = _progress(progress, total)
    started = time.perf_counter()
    first_ms: int | None = None
    try:
        for i, rec in enumerate(timeline):
            if stop is not None and stop():
                break
            if rec.topic == "labels" and not include_labels:
                continue
            if speed > 0:
                first_ms = rec.at_ms if first_ms is None else first_ms
                due = started + (rec.at_ms - first_ms) / 1000 / speed
                delay = due - time.perf_counter()
                if delay > 0.05:  # idle long enough: let the waiting records go out now
                    producer.flush()
                    delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            producer.send(topics[rec.topic], key=rec.key.encode(), value=rec.value)
            if rec.topic == "vitals":
                stats.vitals += 1
                stats.observations += rec.value.count(b'"code"')
                if on_vitals is not None:
                    on_vitals(stats.vitals)
            else:
                stats.labels += 1
            if bar is not None and i % 200 == 0:
                bar[0].update(bar[1], completed=i)
        producer.flush()
    finally:
        producer.close()
        if bar is not None:
            bar[0].update(bar[1], completed=stats.vitals + stats.labels)
            bar[0].stop()
    stats.seconds = time.perf_counter() - started
    return stats


def replay_path(settings: VigilSettings, path: Path, *, limit: int | None = None,
                **kwargs) -> ReplayStats:
    stays = load_stays(Path(path), limit)
    if not stays:
        raise SystemExit(f"no PhysioNet 2019 (.psv) or 2012 (.txt) records found in {path}")
    return replay_stays(settings, stays, **kwargs)


def _progress(enabled: bool, total: int):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    p = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                 TimeRemainingColumn(), transient=False)
    p.start()
    return p, p.add_task("replay", total=total)
