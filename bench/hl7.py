"""Throughput and ACK latency of the MLLP listener into Kafka, beside the raw produce rate.

    python bench/hl7.py [--messages 2000] [--connections 4]

1. An embedded tansu broker is started; the raw produce rate is measured on it first, with
   the gateway's producer settings (aiokafka, acks=all, linger 0): one record awaited at a
   time, as one gateway connection does, and with ``--connections`` sends in flight.
2. An in-process MLLP listener (:class:`vigil.gateways.runner.Hl7Listener`) on the same
   broker; ``--connections`` blocking MLLP clients each send their share of PCD-01 ORU^R01
   messages (6 vitals each), one message in flight per connection, as gateways do. Only AA
   counts; latency is from sending a message to reading its ACK.

The messages come from :func:`vigil.gateways.samples.bedside_stream`: ``--beds`` patients,
each message with new timestamps and drifting values, as a ward sends them (resending one
message with a new control id would measure caches a real ward never hits). They are built
before the clock starts.

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vigil.broker import EmbeddedBroker, free_port  # noqa: E402
from vigil.gateways.runner import Hl7Listener  # noqa: E402
from vigil.gateways.samples import VITALS_PER_MESSAGE, bedside_stream, oru  # noqa: E402
from vigil.gateways.sender import MllpClient, ack_code  # noqa: E402
from vigil.kafka_config import aiokafka_options  # noqa: E402
from vigil.settings import VigilSettings  # noqa: E402
from vigil.stream.topics import ensure_topics  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


async def raw_produce(s: VigilSettings, n: int, in_flight: int, value: bytes) -> float:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all", linger_ms=0,
                         **aiokafka_options(s))
    await p.start()
    try:
        async def worker(k: int) -> None:
            for i in range(k, n, in_flight):
                await p.send_and_wait(s.topic_vitals, value=value, key=f"p{i % 50}".encode())
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(in_flight)))
        return n / (time.perf_counter() - t0)
    finally:
        await p.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--beds", type=int, default=32, help="patients the messages come from")
    args = ap.parse_args()
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-hl7-"))
    with EmbeddedBroker(free_port(), log_path=workdir / "broker.log") as broker:
        s = VigilSettings(embedded_broker_port=broker.port, partitions=4,
                          data_dir=str(workdir / "state"), hl7_timezone="UTC")
        ensure_topics(s)
        messages = list(bedside_stream(args.messages, beds=args.beds))
        record_bytes = 420  # about one produced VitalsRecord of 6 observations
        console.print(f"raw produce, {args.messages:,} records …")
        raw_1 = asyncio.run(raw_produce(s, args.messages, 1, b"x" * record_bytes))
        raw_c = asyncio.run(raw_produce(s, args.messages, args.connections, b"x" * record_bytes))

        console.print(f"MLLP listener, {args.messages:,} messages over {args.connections} "
                      "connections …")
        latencies: list[float] = []
        codes: dict[str, int] = {}
        lock = threading.Lock()
        with Hl7Listener(s) as listener:
            def client(k: int) -> None:
                c = MllpClient("127.0.0.1", listener.port)
                mine: list[float] = []
                got: dict[str, int] = {}
                for msg in messages[k::args.connections]:
                    t = time.perf_counter()
                    code = ack_code(c.exchange(msg))
                    mine.append((time.perf_counter() - t) * 1000)
                    got[code] = got.get(code, 0) + 1
                c.close()
                with lock:
                    latencies.extend(mine)
                    for code, n in got.items():
                        codes[code] = codes.get(code, 0) + n
            c0 = MllpClient("127.0.0.1", listener.port)  # warm-up: connection and metadata
            ack_code(c0.exchange(oru("WARM")))
            c0.close()
            threads = [threading.Thread(target=client, args=(k,)) for k in range(args.connections)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
    aa = codes.get("AA", 0)
    mps = aa / wall
    obs = VITALS_PER_MESSAGE * aa / wall
    t = Table(title=f"Vigil HL7 gateway benchmark ({args.messages:,} ORU^R01 from {args.beds} "
                    f"beds, {VITALS_PER_MESSAGE} vitals each, {args.connections} connections)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("listener: messages/s with AA", f"{mps:,.0f}")
    t.add_row("listener: observations/s", f"{obs:,.0f}")
    t.add_row("ACK latency p50 / p99", f"{pct(latencies, .5):.1f} / {pct(latencies, .99):.1f} ms")
    t.add_row("raw produce, 1 in flight: records/s", f"{raw_1:,.0f}")
    t.add_row(f"raw produce, {args.connections} in flight: records/s", f"{raw_c:,.0f}")
    t.add_row("listener / raw (same in-flight)", f"{mps / raw_c:.3f}")
    t.add_row("ACK codes", ", ".join(f"{k} {v}" for k, v in sorted(codes.items())))
    console.print(t)
    print(json.dumps({
        "messages_per_s": round(mps, 1),
        "observations_per_s": round(obs, 1),
        "ack_p50_ms": round(pct(latencies, .5), 2),
        "ack_p99_ms": round(pct(latencies, .99), 2),
        "raw_produce_per_s_1_in_flight": round(raw_1, 1),
        "raw_produce_per_s": round(raw_c, 1),
        "ratio_vs_raw": round(mps / raw_c, 4),
        "messages": args.messages,
        "connections": args.connections,
        "beds": args.beds,
        "acks": codes,
    }))
    return 0 if aa == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())
