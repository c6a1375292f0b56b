"""Throughput and latency of one Vigil worker on the embedded broker, beside a raw consumer.

    python bench/stream.py [--data PATH] [--copies 20] [--rate 200]

1. A backlog of real vitals records (the shipped sample, or PATH, each stay replayed under
   ``--copies`` distinct pseudonyms) is produced to the vitals topic.
2. Baseline, in this process: a raw aiokafka ``getmany`` loop consumes the same backlog
   (no decoding, no state, no outputs): the ceiling of this broker and client.
3. One ``vigil worker`` (a subprocess, as deployed) drains the backlog: validation, windows,
   features, scoring, alert lifecycle, outputs published and acknowledged, one changelog
   write per patient per batch. Throughput is measured from the Kafka timestamps of the
   outputs (first to last), so worker start-up is not counted.
4. Latency: fresh records at ``--rate`` per second; a record's latency is from its Kafka
   timestamp (producer) to the Kafka timestamp of its score / alert (published).

5. Ceilings, in this process on the same records: the processor without Kafka or faust,
   and the deployed scorers alone (every kind) on the same feature rows; the worker's
   ratio to the scorers says how much of a record's cost is the model.

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vigil.broker import EmbeddedBroker, free_port
from vigil.kafka_config import aiokafka_options, kafka_python_options
from vigil.runtime import OutputCollector, WorkerProcess
from vigil.sample import sample_path
from vigil.settings import VigilSettings
from vigil.stream.replay.replayer import replay_timeline
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.topics import ensure_topics


def clones(stays, start: int, copies: int):
    return [dataclasses.replace(s, source_id=f"{s.source_id}~{k}")
            for k in range(start, start + copies) for s in stays]


async def raw_consume(settings: VigilSettings, expected: int) -> float:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                         max_partition_fetch_bytes=4 << 20, fetch_max_bytes=16 << 20,
                         **aiokafka_options(settings))
    await c.start()
    try:
        tps = [TopicPartition(settings.topic_vitals, p)
               for p in sorted(c.partitions_for_topic(settings.topic_vitals) or [])]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        n, t0 = 0, None
        while n < expected:
            batch = await c.getmany(timeout_ms=1000, max_records=5000)
            if t0 is None and batch:
                t0 = time.perf_counter()
            n += sum(len(v) for v in batch.values())
        return n / (time.perf_counter() - t0)
    finally:
        await c.stop()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def ceilings(s: VigilSettings, backlog: Timeline) -> tuple[float, float]:
    """(processor records/s, scorers records/s) on the backlog's own records, in process.

    The processor: validation, windows, features, every kind's scorer, the lifecycle and
    explanations, as the worker runs them, without Kafka or faust. The scorers alone: the
    same feature rows (from the one feature function, as evaluation builds them) through
    every deployed scorer in the worker's fixed-shape batches: the model's own ceiling.
    """
    from vigil.models.base import score_padded
    from vigil.stream.offline import build_feature_table, run_offline
    from vigil.stream.processor import build_processor

    proc = build_processor(s)
    proc.warm_up()
    records = [(r.key, r.value) for r in backlog if r.topic == "vitals"]
    t0 = time.perf_counter()
    run_offline(proc, records, now_ms=int(time.time() * 1000), partitions=s.partitions)
    proc_rps = len(records) / (time.perf_counter() - t0)
    table = build_feature_table(backlog.stays, s, workers=1, progress=False)
    X = table.X[table.has_record]
    t0 = time.perf_counter()
    for scorer in proc.scorers.values():
        score_padded(scorer, X, proc.score_batch_size)
    return proc_rps, len(X) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="PhysioNet folder/archive (default: shipped sample)")
    ap.add_argument("--patients", type=int, default=None, help="stays taken from --data")
    ap.add_argument("--copies", type=int, default=20, help="pseudonymous copies of each stay")
    ap.add_argument("--rate", type=float, default=200.0, help="records/s in the latency phase")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args()
    console = Console()

    base = load_stays(args.data or sample_path(), args.patients)
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    with EmbeddedBroker(free_port(), log_path=workdir / "broker.log") as broker:
        s = VigilSettings(embedded_broker_port=broker.port, partitions=args.partitions,
                          data_dir=str(workdir / "state"), web_port=free_port())
        ensure_topics(s)
        backlog = Timeline(clones(base, 0, args.copies), s.pseudonym_key.get_secret_value(),
                           now_ms=int(time.time() * 1000))
        console.print(f"producing {backlog.n_vitals:,} vitals records "
                      f"({len(backlog.stays):,} stays) to {s.bootstrap_servers} …")
        stats = replay_timeline(s, backlog, include_labels=False, progress=False)
        n, obs = stats.vitals, stats.observations

        console.print("baseline: raw aiokafka getmany loop …")
        raw_rps = asyncio.run(raw_consume(s, n))

        console.print("one vigil worker draining the backlog …")
        collector = OutputCollector(s).start()
        worker = WorkerProcess(s, web_port=s.web_port, log_path=workdir / "worker.log").start()
        worker.wait_ready()
        t_ready = time.perf_counter()
        if not collector.wait_for(n, timeout_s=1800):
            console.print(f"[red]only {collector.processed} of {n} processed[/]")
            return 1
        drain_wall = time.perf_counter() - t_ready
        span_s = (collector.last_output_ms - collector.first_output_ms) / 1000
        rps = n / span_s

        console.print(f"latency: {args.rate:.0f} records/s for {args.latency_seconds:.0f} s …")
        fresh_stays = clones(base, args.copies, max(1, args.copies))
        fresh = Timeline(fresh_stays, s.pseudonym_key.get_secret_value(),
                         now_ms=int(time.time() * 1000))
        # pace by record count: event times are hours apart, the bench wants records/s
        recs = [r for r in fresh if r.topic == "vitals"][:int(args.rate * args.latency_seconds)]
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all", linger_ms=0,
                                 **kafka_python_options(s))
        phase_ms = int(time.time() * 1000)
        t0 = time.perf_counter()
        for i, r in enumerate(recs):
            delay = t0 + i / args.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            producer.send(s.topic_vitals, key=r.key.encode(), value=r.value)
        producer.flush()
        producer.close()
        collector.wait_for(n + len(recs), timeout_s=120)
        time.sleep(0.5)
        collector.stop()
        worker.stop()
        score_lat = [lat for ing, lat in collector.score_latency_ms if ing >= phase_ms]
        alert_lat = [lat for ing, lat in collector.alert_latency_ms if ing >= phase_ms]

    console.print("ceilings in this process: the processor without Kafka, the scorers alone …")
    proc_rps, scorer_rps = ceilings(s, backlog)
    p50, p99 = pct(alert_lat, 0.5), pct(alert_lat, 0.99)
    t = Table(title=f"Vigil stream benchmark ({n:,} records, {obs:,} observations, "
                    f"{args.partitions} partitions)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("worker: records/s (backlog drain)", f"{rps:,.0f}")
    t.add_row("worker: observations/s", f"{obs / span_s:,.0f}")
    t.add_row("worker: wall time ready → drained", f"{drain_wall:.1f} s")
    t.add_row("raw aiokafka consume: records/s", f"{raw_rps:,.0f}")
    t.add_row("worker / raw", f"{rps / raw_rps:.3f}")
    t.add_row(f"score latency p50 / p99 at {args.rate:.0f}/s",
              f"{pct(score_lat, .5):.1f} / {pct(score_lat, .99):.1f} ms")
    t.add_row(f"alert latency p50 / p99 ({len(alert_lat)} alerts)", f"{p50:.1f} / {p99:.1f} ms")
    t.add_row("processor alone (no Kafka, no faust): records/s", f"{proc_rps:,.0f}")
    t.add_row("deployed scorers alone (every kind, fixed-shape batches): records/s",
              f"{scorer_rps:,.0f}")
    t.add_row("worker / scorers alone", f"{rps / scorer_rps:.3f}")
    t.add_row("outputs published twice (deduplicated)", str(collector.duplicates))
    console.print(t)
    print(json.dumps({
        "records_per_s": round(rps, 1),
        "observations_per_s": round(obs / span_s, 1),
        "raw_records_per_s": round(raw_rps, 1),
        "ratio_vs_raw": round(rps / raw_rps, 4),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "score_p50_ms": round(pct(score_lat, .5), 1),
        "score_p99_ms": round(pct(score_lat, .99), 1),
        "records": n,
        "latency_rate_per_s": args.rate,
        "alerts_in_latency_phase": len(alert_lat),
        "processor_records_per_s": round(proc_rps, 1),
        "scorer_records_per_s": round(scorer_rps, 1),
        "ratio_vs_scorer": round(rps / scorer_rps, 4),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
