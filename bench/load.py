"""Sustained load as a hospital sends it: N beds, each monitor at its own rate, for a while.

    python bench/load.py [--beds 100,1000,10000] [--workers 1,2] [--seconds 30]

Each bed is a live feed (event time = now): vitals every 1, 5, 15 or 60 s (a quarter of the
beds each, as bedside monitors and their gateways send them: waveform-derived numerics every
second, NIBP cycles, charting intervals), labs (lactate, WBC, creatinine) hourly at a random
phase, one bed in ten deteriorating, so that alerts happen. For every bed count and worker
count, on a fresh embedded broker with the deployed models, it reports:

* records/s and observations/s per worker (the workers' own counters over the window),
* Kafka → score and Kafka → alert p50/p99 (producer timestamp to the output's), and
  event → alert p50/p99 (the monitor's event time to the alert's publication),
* consumer lag at the end of the window (records sent but not processed),
* resident memory per 1,000 patients of window state (worker RSS growth / beds).

A rate the workers cannot sustain shows as growing lag and latency, not as an error. Prints a
table per run, then one JSON line per run; ``--out`` writes them and a plot.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vigil.broker import EmbeddedBroker, free_port
from vigil.kafka_config import kafka_python_options
from vigil.runtime import OutputCollector, WorkerProcess
from vigil.settings import VigilSettings
from vigil.stream.topics import ensure_topics

INTERVALS_S = (1, 5, 15, 60)
LAB_INTERVAL_S = 3600


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


class Monitors:
    """The beds' feeds: a schedule of (due time, bed, kind) and a value per bed."""

    def __init__(self, beds: int, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.start = time.time()
        self.bad = {b for b in range(beds) if b % 10 == 0}
        self.admit = {b: self.start - rng.uniform(1, 72) * 3600 for b in range(beds)}
        self.heap: list[tuple[float, int, str]] = []
        for b in range(beds):
            every = INTERVALS_S[b % len(INTERVALS_S)]
            heapq.heappush(self.heap, (self.start + rng.uniform(0, every), b, "vitals"))
            heapq.heappush(self.heap, (self.start + rng.uniform(0, LAB_INTERVAL_S), b, "labs"))

    def record(self, bed: int, kind: str, at: float) -> bytes:
        r, bad = self.rng, bed in self.bad
        if kind == "vitals":
            obs = {"HR": r.gauss(118 if bad else 80, 6), "RR": r.gauss(27 if bad else 16, 2),
                   "SBP": r.gauss(92 if bad else 122, 6), "DBP": r.gauss(55 if bad else 75, 4),
                   "SpO2": min(100.0, r.gauss(91 if bad else 97, 1)),
                   "Temp": r.gauss(38.7 if bad else 36.9, 0.2)}
        else:
            obs = {"Lactate": r.gauss(3.5 if bad else 1.1, 0.3), "WBC": r.gauss(15 if bad else 8, 1),
                   "Creatinine": r.gauss(1.9 if bad else 0.9, 0.1)}
        when = datetime.fromtimestamp(at, tz=UTC).isoformat()
        return json.dumps({
            "patient": f"load-{bed:05d}", "event_time": when, "event_id": f"{bed}:{at:.3f}",
            "unit": f"U{bed // 24 % 40:02d}", "bed": f"B{bed % 24:02d}", "source": "load",
            "observations": [{"code": c, "value": round(v, 2)} for c, v in obs.items()],
            "patient_info": {"age_years": 40 + bed % 50,
                             "icu_admit_time": datetime.fromtimestamp(self.admit[bed],
                                                                      tz=UTC).isoformat()},
        }).encode()

    def due(self, now: float) -> list[tuple[int, str, float]]:
        out = []
        while self.heap and self.heap[0][0] <= now:
            at, bed, kind = heapq.heappop(self.heap)
            out.append((bed, kind, at))
            every = (INTERVALS_S[bed % len(INTERVALS_S)] if kind == "vitals" else LAB_INTERVAL_S)
            heapq.heappush(self.heap, (at + every, bed, kind))
        return out


def run(beds: int, workers: int, seconds: float, partitions: int, console: Console) -> dict:
    from kafka import KafkaProducer

    workdir = Path(tempfile.mkdtemp(prefix="vigil-load-"))
    with EmbeddedBroker(free_port(), log_path=workdir / "broker.log") as broker:
        s = VigilSettings(embedded_broker_port=broker.port, partitions=partitions,
                          data_dir=str(workdir / "state"), web_port=free_port())
        ensure_topics(s)
        procs = [WorkerProcess(s, web_port=free_port(), log_path=workdir / f"w{i}.log").start()
                 for i in range(workers)]
        for w in procs:
            w.wait_ready(timeout_s=300)
        rss0 = sum(_rss_mb(w.proc.pid) for w in procs if w.proc)
        collector = OutputCollector(s).start()
        producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks=1, linger_ms=5,
                                 **kafka_python_options(s))
        monitors = Monitors(beds)
        sent = sent_obs = 0
        alert_event_ms: list[float] = []

        console.print(f"{beds:,} beds, {workers} worker(s): {seconds:.0f} s of live feeds …")
        t_end = monitors.start + seconds
        counts0 = sum(_metric(w.metrics_text(), "vigil_vitals_records_total") for w in procs)
        window0 = time.time()
        while (now := time.time()) < t_end:
            for bed, kind, at in monitors.due(now):
                value = monitors.record(bed, kind, at)
                producer.send(s.topic_vitals, key=f"load-{bed:05d}".encode(), value=value)
                sent += 1
                sent_obs += 6 if kind == "vitals" else 3
            time.sleep(0.005)
        producer.flush()
        window = time.time() - window0
        texts = [w.metrics_text() for w in procs]
        handled = sum(_metric(t, "vigil_vitals_records_total") for t in texts) - counts0
        lag = sum(_metric(t, "vigil_consumer_lag_records") for t in texts)
        rss1 = sum(_rss_mb(w.proc.pid) for w in procs if w.proc)
        time.sleep(1.0)
        score_lat = [lat for _, lat in list(collector.score_latency_ms)]
        alert_lat = [lat for _, lat in list(collector.alert_latency_ms)]
        for a in list(collector.alerts.values()):
            alert_event_ms.append((a.published_at - a.event_time).total_seconds() * 1000)
        collector.stop()
        producer.close()
        for w in procs:
            w.stop()
    return {"beds": beds, "workers": workers, "seconds": round(window, 1),
            "sent_records_per_s": round(sent / window, 1),
            "records_per_s_per_worker": round(handled / window / workers, 1),
            "observations_per_s_per_worker": round(handled / window / workers
                                                   * sent_obs / max(sent, 1), 1),
            "kafka_to_score_p50_ms": round(_pct(score_lat, .5), 1),
            "kafka_to_score_p99_ms": round(_pct(score_lat, .99), 1),
            "kafka_to_alert_p50_ms": round(_pct(alert_lat, .5), 1),
            "kafka_to_alert_p99_ms": round(_pct(alert_lat, .99), 1),
            "event_to_alert_p50_ms": round(_pct(alert_event_ms, .5), 1),
            "event_to_alert_p99_ms": round(_pct(alert_event_ms, .99), 1),
            "alerts": len(alert_lat),
            "consumer_lag_records_at_end": int(lag),
            "rss_mb_per_1000_patients": round((rss1 - rss0) / beds * 1000, 1)}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for n in sorted({r["workers"] for r in results}):
        rows = sorted((r for r in results if r["workers"] == n), key=lambda r: r["beds"])
        beds = [r["beds"] for r in rows]
        a.plot(beds, [r["sent_records_per_s"] for r in rows], "k:", label=None if n > 1 else "sent")
        a.plot(beds, [r["records_per_s_per_worker"] * n for r in rows], "o-",
               label=f"{n} worker(s), processed")
        b.plot(beds, [r["kafka_to_score_p99_ms"] for r in rows], "o-", label=f"{n} worker(s)")
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("beds")
        ax.legend()
    a.set_ylabel("records/s")
    b.set_ylabel("Kafka → score p99 (ms)")
    b.set_yscale("log")
    fig.suptitle("bench/load.py: live feeds on the embedded broker, this 2-core machine")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--beds", default="100,1000,10000")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None, help="folder for load.json and load.png")
    args = ap.parse_args()
    console = Console()
    results = []
    for beds in [int(x) for x in args.beds.split(",")]:
        for workers in [int(x) for x in args.workers.split(",")]:
            r = run(beds, workers, args.seconds, args.partitions, console)
            results.append(r)
            t = Table(title=f"{beds:,} beds, {workers} worker(s)")
            t.add_column("measure")
            t.add_column("value", justify="right")
            for k, v in r.items():
                t.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
            console.print(t)
            print(json.dumps(r), flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "load.json").write_text(json.dumps(results, indent=1))
        plot(results, args.out / "load.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
