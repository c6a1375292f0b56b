"""A broker that loses its data under a running worker is noticed within seconds, and the
worker stops with one clear message and its own exit code (issue 13: it used to report
healthy while processing nothing, log ~800 errors, and later hang in table recovery)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from vigil.broker import EmbeddedBroker, free_port
from vigil.runtime import WorkerProcess
from vigil.settings import VigilSettings
from vigil.stream.broker_watch import EXIT_BROKER_LOST
from vigil.stream.replay.replayer import replay_timeline
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.topics import ensure_topics

from .test_e2e import vitals_consumed
from .waiting import wait_until

MESSAGE = "the broker lost data this worker had read or written"


@pytest.mark.broker
def test_a_worker_stops_with_one_clear_message_when_the_broker_loses_its_data(
        tmp_path: Path, sample_2019: Path) -> None:
    port = free_port()
    s = VigilSettings(embedded_broker_port=port, app_id=f"vigil-{uuid.uuid4().hex[:8]}",
                      partitions=3, data_dir=str(tmp_path / "state"), web_port=free_port(),
                      sepsis_scorer="qsofa", deterioration_scorer="news2", broker_check_s=1.0)
    first = EmbeddedBroker(port, log_path=tmp_path / "broker1.log").start()
    log = tmp_path / "worker.log"
    w = WorkerProcess(s, web_port=s.web_port, log_path=log).start()
    second = None
    try:
        ensure_topics(s)
        w.wait_ready(timeout_s=120)
        stats = replay_timeline(s, Timeline(load_stays(sample_2019, 3), "k",
                                            now_ms=int(time.time() * 1000)),
                                progress=False, include_labels=False)
        wait_until(lambda: vitals_consumed(w.metrics_text()) >= stats.vitals, 60,
                   "the worker scored the replay")

        first.stop()  # unreachable is not lost: the worker says so and waits
        wait_until(lambda: (h := w.health()) is not None and h.get("broker_reachable") is False,
                   30, "/health reporting the broker unreachable")
        assert w.proc is not None and w.proc.poll() is None

        second = EmbeddedBroker(port, log_path=tmp_path / "broker2.log").start()  # empty
        came_back = time.monotonic()
        wait_until(lambda: w.proc.poll() is not None, 30, "the worker to stop on the lost data")
        code = w.proc.returncode
        took = time.monotonic() - came_back
    finally:
        w.stop()
        for b in (first, second):
            if b is not None:
                b.stop()
    text = log.read_text(errors="replace")
    assert code == EXIT_BROKER_LOST, text[-3000:]
    assert text.count(MESSAGE) == 1 and took < 30
    print(f"exit {code} {took:.1f} s after the empty broker came back")
