"""``vigil demo``: broker, topics, workers, a replay of real ICU data, and the alerts live.

Everything runs as it would in production, only on one machine: tansu as the broker,
``vigil worker`` subprocesses in one consumer group, the replay as a Kafka producer, and the
alerts read back from the alerts topic.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
from collections import Counter, deque
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from vigil.broker import EmbeddedBroker, free_port
from vigil.runtime import BoardProcess, OutputCollector, WorkerProcess
from vigil.sample import sample_path
from vigil.settings import VigilSettings
from vigil.stream.records import AlertEvent
from vigil.stream.replay.replayer import ReplayStats, replay_timeline
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.topics import ensure_topics

__all__ = ["run_demo"]

_STYLE = {"high": "bold white on red", "medium": "bold black on yellow", "low": "cyan"}
_STATE = {"raised": "RAISED", "escalated": "ESCALATED ↑", "acknowledged": "acked ✓",
          "resolved": "resolved"}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class _Board:
    """The terminal view: counters and the latest alert transitions, newest first."""

    def __init__(self, console: Console, collector: OutputCollector, produced: list[int],
                 links: list[str]) -> None:
        self.console = console
        self.collector = collector
        self.produced = produced
        self.links = links
        self.recent: deque[AlertEvent] = deque(maxlen=14)
        self.lock = threading.Lock()

    def on_alert(self, a: AlertEvent) -> None:
        with self.lock:
            self.recent.appendleft(a)
        if not self.console.is_terminal:  # logs / CI: one readable line per transition
            self.console.print(_line(a), highlight=False, soft_wrap=True)

    def __rich__(self) -> Group:
        c = self.collector
        raised = Counter(a.kind for a in list(c.alerts.values()) if a.state == "raised")
        head = Text.assemble(
            ("Vigil demo  ", "bold"),
            f"replayed {self.produced[0]:,}  processed {c.processed:,}  "
            f"rejected {len(c.dlq_record_ids):,}  ",
            ("sepsis alerts ", "bold"), f"{raised['sepsis']}  ",
            ("deterioration alerts ", "bold"), f"{raised['deterioration']}\n",
            (f"{'   '.join(self.links)}   Ctrl-C stops everything", "dim"),
        )
        t = Table(expand=True, box=box.SIMPLE_HEAD, padding=(0, 1), header_style="bold")
        t.add_column("event time", no_wrap=True)
        t.add_column("bed", no_wrap=True)
        t.add_column("alert", no_wrap=True)
        t.add_column("risk", justify="right", no_wrap=True)
        t.add_column("why", ratio=1, min_width=24)
        with self.lock:
            rows = list(self.recent)
        for a in rows:
            alert = Text.assemble((f"{a.kind} ", "bold"), (a.severity, _STYLE.get(a.severity, "")),
                                  f" {_STATE[a.state]}")
            t.add_row(a.event_time.strftime("%m-%d %H:%M"), a.bed or a.patient[:11], alert,
                      f"{a.risk:.2f}", _why(a))
        return Group(head, t)


def _board_count(board: BoardProcess, expected: int, timeout_s: float = 15.0) -> int:
    """Alerts (active + recently resolved) the board shows, once it has caught up."""
    deadline = time.monotonic() + timeout_s
    n = -1
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{board.url}/api/alerts", timeout=2) as r:
                view = json.loads(r.read())
            n = len(view["active"]) + len(view["resolved"])
        except OSError:
            pass
        if n >= expected:
            break
        time.sleep(0.2)
    return n


def _why(a: AlertEvent) -> str:
    """The drivers, and for an escalation or acknowledgement what caused it."""
    if a.state in ("escalated", "acknowledged") and a.transition_reason:
        return f"{a.summary} [{a.transition_reason}]"
    return a.summary


def _line(a: AlertEvent) -> str:
    return (f"{a.event_time:%m-%d %H:%M}  {a.bed or '-':9s} {a.patient[:11]}  "
            f"{a.kind:13s} {a.severity:6s} {_STATE[a.state]:11s} risk {a.risk:.2f}  {_why(a)}")


def run_demo(settings: VigilSettings, *, data: Path | None = None, limit: int | None = None,
             speed: float = 3600.0, until_done: bool = False, workers: int = 1,
             timeout_s: float = 1800.0, console: Console | None = None,
             board: bool = True) -> dict | None:
    console = console or Console()
    path = Path(data) if data else sample_path()
    stays = load_stays(path, limit)
    if not stays:
        raise SystemExit(f"no PhysioNet 2019 (.psv) or 2012 (.txt) records found in {path}")
    workdir = Path(tempfile.mkdtemp(prefix="vigil-demo-"))
    broker: EmbeddedBroker | None = None
    procs: list[WorkerProcess] = []
    board_proc: BoardProcess | None = None
    collector: OutputCollector | None = None
    stop = threading.Event()
    try:
        if settings.embedded:
            port = settings.embedded_broker_port
            if not _port_free(port):
                port = free_port()
                console.print(f"[yellow]port {settings.embedded_broker_port} is busy: the "
                              f"embedded broker uses {port}[/]")
            broker = EmbeddedBroker(port, log_path=workdir / "broker.log").start()
            settings = settings.model_copy(update={"embedded_broker_port": port})
        settings = settings.model_copy(update={"data_dir": str(workdir / "state")})
        ensure_topics(settings)
        console.print(f"[bold]broker[/] {settings.bootstrap_servers}  "
                      f"[bold]patients[/] {len(stays)} from {path}  "
                      f"[bold]workers[/] {workers}: starting…")
        for i in range(workers):
            port = settings.web_port + i
            port = port if _port_free(port) else free_port()
            procs.append(WorkerProcess(settings, web_port=port,
                                       log_path=workdir / f"worker-{i}.log").start())
        links = [f"metrics: {', '.join(f'{p.url}/metrics' for p in procs)}"]
        if board:
            port = settings.board_port if _port_free(settings.board_port) else None
            board_proc = BoardProcess(settings, workdir / "board.log", port).start()
            links.insert(0, f"alert board: {board_proc.url}/")
            console.print(f"[bold]alert board[/] {board_proc.url}/  (acknowledge alerts there)")
        for p in procs:
            p.wait_ready()
        produced = [0]
        collector = OutputCollector(settings)
        board = _Board(console, collector, produced, links)
        collector.on_alert = board.on_alert
        collector.start()
        timeline = Timeline(stays, settings.pseudonym_key.get_secret_value(),
                            now_ms=int(time.time() * 1000))
        stats_box: list[ReplayStats] = []
        errors: list[BaseException] = []

        def _replay() -> None:
            try:
                stats_box.append(replay_timeline(
                    settings, timeline, speed=speed, progress=False, stop=stop.is_set,
                    on_vitals=lambda n: produced.__setitem__(0, n)))
            except BaseException as exc:  # surfaced in the main thread
                errors.append(exc)

        started = time.perf_counter()
        replayer = threading.Thread(target=_replay, name="vigil-replay", daemon=True)
        replayer.start()
        done_at: float | None = None
        live = Live(board, console=console, refresh_per_second=4,
                    transient=False) if console.is_terminal else None
        if live:
            live.start()
        try:
            while True:
                time.sleep(0.2)
                if errors:
                    raise errors[0]
                dead = [p for p in procs if p.proc is not None and p.proc.poll() is not None]
                if dead:
                    raise RuntimeError(f"a worker exited with {dead[0].proc.returncode}; "
                                       f"see {dead[0].log_path}")
                if stats_box:
                    produced[0] = stats_box[0].vitals
                    if done_at is None and collector.processed >= produced[0]:
                        done_at = time.perf_counter()
                        if until_done:
                            break
                        console.print("[green]replay finished and every record processed; "
                                      "Ctrl-C stops the demo[/]")
                if time.perf_counter() - started > timeout_s and until_done:
                    raise TimeoutError(f"not all records processed in {timeout_s:.0f} s")
        finally:
            if live:
                live.stop()
        stats = stats_box[0]
        elapsed = (done_at or time.perf_counter()) - started
        raised = Counter(a.kind for a in collector.alerts.values() if a.state == "raised")
        episodes = len({a.alert_id for a in collector.alerts.values()})
        on_board = _board_count(board_proc, episodes) if board_proc else None
        return {
            "produced": stats.vitals,
            "accepted": len(collector.score_ids),
            "rejected": len(collector.dlq_record_ids),
            "alerts": {"sepsis": raised.get("sepsis", 0),
                       "deterioration": raised.get("deterioration", 0)},
            "records_per_s": round(stats.vitals / elapsed, 1) if elapsed > 0 else None,
            "patients": stats.patients,
            "partially_accepted": len(collector.dlq_observation_ids),
            "alert_transitions": len(collector.alerts),
            "labels": stats.labels,
            "alert_episodes": episodes,
            "board": {"url": f"{board_proc.url}/", "alerts": on_board} if board_proc else None,
        }
    except KeyboardInterrupt:
        console.print("\n[bold]stopping…[/]")
        return None
    finally:
        stop.set()
        if collector is not None:
            collector.stop()
        for p in procs:
            p.stop()
        if board_proc is not None:
            board_proc.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
