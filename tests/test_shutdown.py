"""A worker stops within a bounded time in any state (issue 13: one that got SIGTERM during
a rebalance had not exited after 2.5 min)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

from vigil.runtime import WorkerProcess
from vigil.worker import EXIT_SHUTDOWN_TIMEOUT, ShutdownWatchdog

from .waiting import wait_until


def test_the_watchdog_exits_once_its_time_is_up_and_not_before() -> None:
    codes: list[int] = []
    fired = threading.Event()

    def exit_(code: int) -> None:
        codes.append(code)
        fired.set()

    dog = ShutdownWatchdog(0.3, exit=exit_)
    started = time.monotonic()
    dog.arm()
    timer = dog._timer
    dog.arm()  # a second signal does not start a second clock
    assert dog._timer is timer
    assert fired.wait(5)
    assert time.monotonic() - started >= 0.3
    assert timer is not None
    timer.join(5)
    assert codes == [EXIT_SHUTDOWN_TIMEOUT]


def test_an_unarmed_watchdog_never_fires() -> None:
    codes: list[int] = []
    ShutdownWatchdog(0.01, exit=codes.append)
    assert codes == []


@pytest.mark.broker
@pytest.mark.parametrize("when", ["starting", "ready"])
def test_sigterm_stops_the_worker_within_its_shutdown_timeout(broker_settings, tmp_path,
                                                               when) -> None:
    s = broker_settings.model_copy(update={"shutdown_timeout_s": 5.0})
    w = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "w.log").start()
    assert w.proc is not None
    try:
        if when == "ready":
            w.wait_ready(timeout_s=120)
        else:  # joining the group, recovering the table: its web server is up, not ready
            wait_until(lambda: w.health() is not None and not w.health().get("ready"), 60,
                       "the worker's web server while it starts", interval_s=0.05)
        w.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = w.proc.wait(s.shutdown_timeout_s + 15)
        took = time.monotonic() - sent
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not exit within {s.shutdown_timeout_s + 15} s of SIGTERM")
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
    assert code in (0, EXIT_SHUTDOWN_TIMEOUT), (code, (tmp_path / "w.log").read_text()[-2000:])
    assert took < s.shutdown_timeout_s + 15
    print(f"{when}: exit {code} after {took:.1f} s")
