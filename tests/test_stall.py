"""A worker stuck in faust's group join says so and exits with its own code (issue 13: workers
sat in "Recovery: Starting…" for over five minutes after a SIGKILL in a group, silent).

The broker is frozen (SIGSTOP) while the worker joins its group: the join can then never
finish, which is what the stuck workers looked like from outside."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from vigil.broker import EmbeddedBroker, free_port
from vigil.runtime import WorkerProcess
from vigil.settings import VigilSettings
from vigil.stream.stall_watch import EXIT_STALLED
from vigil.stream.topics import ensure_topics

from .waiting import wait_until


@pytest.mark.broker
def test_a_worker_that_cannot_finish_joining_exits_with_the_stall_code(tmp_path: Path) -> None:
    port = free_port()
    # a long session: tansu holds a join for half of it, so the join is surely under way
    # when the broker is frozen
    s = VigilSettings(embedded_broker_port=port, app_id=f"vigil-{uuid.uuid4().hex[:8]}",
                      partitions=2, data_dir=str(tmp_path / "state"), web_port=free_port(),
                      sepsis_scorer="qsofa", deterioration_scorer="news2",
                      session_timeout_s=40, stall_timeout_s=8, broker_check_s=0)
    broker = EmbeddedBroker(port, log_path=tmp_path / "broker.log").start()
    log = tmp_path / "worker.log"
    w = WorkerProcess(s, web_port=s.web_port, log_path=log).start()
    assert broker.proc is not None and w.proc is not None
    try:
        ensure_topics(s)
        wait_until(lambda: "joining group" in log.read_text(errors="replace"), 120,
                   "the worker to start joining its group")
        broker.proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: w.proc.poll() is not None, 90, "the worker to give up")
        code = w.proc.returncode
    finally:
        broker.proc.send_signal(signal.SIGCONT)
        w.stop()
        broker.stop()
    text = log.read_text(errors="replace")
    assert code == EXIT_STALLED, text[-3000:]
    assert text.count("no progress for") == 1
