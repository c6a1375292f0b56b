"""Running Vigil's parts side by side on one machine: the demo, the benchmarks and the
end-to-end tests all start a broker, workers as real subprocesses, and read the outputs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from vigil.broker import die_with_parent, free_port
from vigil.kafka_config import kafka_python_options
from vigil.settings import VigilSettings
from vigil.wire.records import ALERT_DECODER, DLQ_DECODER, SCORE_DECODER, AlertEvent

__all__ = ["BoardProcess", "WorkerProcess", "OutputCollector", "settings_env", "stop_process"]

log = logging.getLogger(__name__)


def settings_env(settings: VigilSettings) -> dict[str, str]:
    """The ``VIGIL_*`` environment that reproduces ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):  # the pseudonym key, the SASL password
            value = value.get_secret_value()
        elif isinstance(value, (tuple, list, dict)):
            value = json.dumps(value)
        env[f"VIGIL_{name.upper()}"] = str(value)
    return env


class BoardProcess:
    """``vigil board`` in a subprocess on its own port (the demo and the browser test)."""

    def __init__(self, settings: VigilSettings, log_path: Path, port: int | None = None) -> None:
        self.settings = settings.model_copy(update={"board_port": port or free_port()})
        self.url = f"http://127.0.0.1:{self.settings.board_port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> BoardProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env.update(settings_env(self.settings))
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "vigil", "board"], env=env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"board not ready; log:\n{self.log_path.read_text()}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"vigil board exited; log:\n{self.log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10.0)

    def __enter__(self) -> BoardProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess:
    """``vigil worker`` in a subprocess, with its own web port."""

    def __init__(self, settings: VigilSettings, *, web_port: int, log_path: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings.model_copy(update={"web_port": web_port})
        self.web_port = web_port
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env.update(settings_env(self.settings))
        env.update(self.extra_env)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "vigil", "worker"], env=env,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        if out is not subprocess.DEVNULL:
            out.close()
        return self

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"{}")
        except OSError:
            return None

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode} during start-up "
                                   f"(log: {self.log_path})")
            h = self.health()
            if h and h.get("ready"):
                return
            time.sleep(0.25)
        raise TimeoutError(f"worker on port {self.web_port} not ready in {timeout_s:.0f} s "
                           f"(log: {self.log_path})")

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        return stop_process(self.proc, timeout_s) if self.proc is not None else None


def stop_process(proc: subprocess.Popen, timeout_s: float) -> int:  # type: ignore[type-arg]
    """SIGTERM (a graceful stop: faust commits, servers close), SIGKILL if it hangs."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout_s)


@dataclass
class OutputCollector:
    """Reads the scores, alerts and DLQ topics from the beginning, deduplicating by id.

    At-least-once processing may publish an output twice; its deterministic id makes the
    second copy recognisable, and the counts here are of distinct outputs.
    """

    settings: VigilSettings
    on_alert: Callable[[AlertEvent], None] | None = None
    score_ids: set[str] = field(default_factory=set)
    dlq_record_ids: set[str] = field(default_factory=set)
    dlq_observation_ids: set[str] = field(default_factory=set)
    alerts: dict[str, AlertEvent] = field(default_factory=dict)  # event_id -> event
    duplicates: int = 0
    # (Kafka timestamp of the vitals record, ms until its score / alert was published)
    score_latency_ms: list[tuple[int, float]] = field(default_factory=list)
    alert_latency_ms: list[tuple[int, float]] = field(default_factory=list)
    first_output_ms: int | None = None
    last_output_ms: int | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-outputs", daemon=True)
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self._caught_up_at = 0.0

    def start(self) -> OutputCollector:
        self._thread.start()
        if not self.ready.wait(30):
            raise TimeoutError("output consumer did not start")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def processed(self) -> int:
        """Distinct vitals records with an outcome: scored or dead-lettered as a whole."""
        with self._lock:
            return len(self.score_ids) + len(self.dlq_record_ids)

    def wait_for(self, produced: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.processed >= produced:
                return True
            time.sleep(0.1)
        return False

    def wait_caught_up(self, timeout_s: float = 15.0) -> bool:
        """Wait until everything published so far has been read (scores, alerts and dead
        letters arrive on separate topics: the last score can come before the last alert)."""
        asked = time.monotonic()
        deadline = asked + timeout_s
        while time.monotonic() < deadline:
            if self._caught_up_at > asked:
                return True
            time.sleep(0.05)
        return False

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        s = self.settings
        consumer = KafkaConsumer(bootstrap_servers=s.bootstrap_servers, group_id=None,
                                 enable_auto_commit=False, client_id="vigil-outputs-reader",
                                 fetch_max_wait_ms=50, **kafka_python_options(s))
        topics = [s.topic_scores, s.topic_alerts, s.topic_dlq]
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        self.ready.set()
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=100, max_records=5000)
                now_ms = int(time.time() * 1000)
                for tp, records in batches.items():
                    for r in records:
                        self._take(tp.topic, r.value, r.timestamp, now_ms)
                # the fetch highwater is exact on tansu (its ListOffsets "latest" is not)
                if not batches and all((hw := consumer.highwater(tp)) is not None
                                       and consumer.position(tp) >= hw for tp in tps):
                    self._caught_up_at = time.monotonic()
        finally:
            consumer.close()

    def _take(self, topic: str, value: bytes, ts_ms: int, now_ms: int) -> None:
        s = self.settings
        with self._lock:
            self.first_output_ms = ts_ms if self.first_output_ms is None else min(self.first_output_ms, ts_ms)
            self.last_output_ms = ts_ms if self.last_output_ms is None else max(self.last_output_ms, ts_ms)
            if topic == s.topic_scores:
                score = SCORE_DECODER.decode(value)
                if score.score_id in self.score_ids:
                    self.duplicates += 1
                    return
                self.score_ids.add(score.score_id)
                if score.ingested_at is not None:
                    ingested = int(score.ingested_at.timestamp() * 1000)
                    self.score_latency_ms.append((ingested, ts_ms - ingested))
            elif topic == s.topic_dlq:
                d = DLQ_DECODER.decode(value)
                ids = self.dlq_record_ids if d.scope == "record" else self.dlq_observation_ids
                if d.dlq_id in ids:
                    self.duplicates += 1
                ids.add(d.dlq_id)
            else:
                a = ALERT_DECODER.decode(value)
                if a.event_id in self.alerts:
                    self.duplicates += 1
                    return
                self.alerts[a.event_id] = a
                if a.ingested_at is not None:
                    ingested = int(a.ingested_at.timestamp() * 1000)
                    self.alert_latency_ms.append((ingested, ts_ms - ingested))
        if topic == s.topic_alerts and self.on_alert is not None:
            self.on_alert(a)
