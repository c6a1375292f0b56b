"""``vigil demo``: broker, topics, workers, a replay of real ICU data, and the alerts live.

Everything runs as it would in production, only on one machine: tansu as the broker,
``vigil worker`` subprocesses in one consumer group, the replay as a Kafka producer, and the
alerts read back from the alerts topic.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections import Counter, deque
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from vigil.board.client import BoardClient, demo_tokens
from vigil.broker import EmbeddedBroker, free_port
from vigil.kinds import registered
from vigil.runtime import BoardProcess, OutputCollector, WorkerProcess
from vigil.sample import sample_path
from vigil.settings import DEV_PSEUDONYM_KEY, VigilSettings
from vigil.stream.replay.replayer import replay_timeline
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.topics import ensure_topics
from vigil.wire.records import AlertEvent

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
        self.kinds = registered(collector.settings)
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
            *[part for k in self.kinds for part in ((f"{k.label.lower()} alerts ", "bold"),
                                                     f"{raised[k.name]}  ")],
            "\n",
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


def _board_count(board: BoardProcess, expected: int, token: str, timeout_s: float = 15.0) -> int:
    """Alerts (active + recently resolved) the board shows, once it has caught up; read
    signed in with the demo's own viewer ``token`` (the board answers no one else)."""
    deadline = time.monotonic() + timeout_s
    n = -1
    client = BoardClient(board.url)
    client.sign_in(token)
    while time.monotonic() < deadline:
        try:
            view = client.get_json("/api/alerts")
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
             board: bool = True, via: str = "kafka") -> dict | None:
    """Run the whole system on this machine; with ``until_done`` return a summary once every
    replayed record is processed (else run until Ctrl-C and return None).

    ``via``: ``kafka``, the replay writes Vigil's JSON to the vitals topic; ``hl7``, it sends
    ORU^R01 messages to an MLLP listener, as a monitor gateway would.
    """
    if via not in ("kafka", "hl7"):
        raise ValueError(f"--via must be kafka or hl7, not {via!r}")
    console = console or Console()
    path = Path(data) if data else sample_path()
    stays = load_stays(path, limit)
    if not stays:
        raise SystemExit(f"no PhysioNet 2019 (.psv) or 2012 (.txt) records found in {path}")
    demo = _Demo(settings, console, stays, path, via)
    try:
        demo.start(workers, board)
        demo.watch(speed, until_done, timeout_s)
        return demo.summary() if until_done else None
    except KeyboardInterrupt:
        console.print("\n[bold]stopping…[/]")
        return None
    finally:
        demo.stop()


class _Demo:
    """The demo's parts, started in order and stopped in reverse."""

    def __init__(self, settings: VigilSettings, console: Console, stays: list, path: Path,
                 via: str) -> None:
        self.settings = settings
        self.console = console
        self.stays = stays
        self.path = path
        self.via = via
        self.workdir = Path(tempfile.mkdtemp(prefix="vigil-demo-"))
        self.broker: EmbeddedBroker | None = None
        self.procs: list[WorkerProcess] = []
        self.board_proc: BoardProcess | None = None
        self.check_token = ""
        self.listener = None  # an in-process MLLP listener with --via hl7
        self.collector: OutputCollector | None = None
        self.links: list[str] = []
        self.stop_event = threading.Event()
        self.produced = [0]
        self.stats: list = []
        self.errors: list[BaseException] = []
        self.elapsed = 0.0

    def start(self, workers: int, board: bool) -> None:
        self.start_broker()
        self.start_workers(workers)
        if board:
            self.start_board()
        for p in self.procs:
            p.wait_ready()
        if self.via == "hl7":
            self.start_listener()

    def start_broker(self) -> None:
        s = self.settings
        if s.embedded:
            port = s.embedded_broker_port
            if not _port_free(port):
                port = free_port()
                self.console.print(f"[yellow]port {s.embedded_broker_port} is busy: the "
                                   f"embedded broker uses {port}[/]")
            self.broker = EmbeddedBroker(port, log_path=self.workdir / "broker.log").start()
            s = s.model_copy(update={"embedded_broker_port": port})
        self.settings = s.model_copy(update={"data_dir": str(self.workdir / "state")})
        ensure_topics(self.settings)

    def start_workers(self, workers: int) -> None:
        s = self.settings
        self.console.print(f"[bold]broker[/] {s.bootstrap_servers}  "
                           f"[bold]patients[/] {len(self.stays)} from {self.path}  "
                           f"[bold]workers[/] {workers}: starting…")
        if s.pseudonym_key.get_secret_value() == DEV_PSEUDONYM_KEY:
            self.console.print("[yellow]pseudonyms use the public development key "
                               "(VIGIL_PSEUDONYM_KEY unset): for demonstration data only[/]")
        for i in range(workers):
            port = s.web_port + i
            port = port if _port_free(port) else free_port()
            self.procs.append(WorkerProcess(s, web_port=port,
                                            log_path=self.workdir / f"worker-{i}.log").start())
        self.links.append(f"metrics: {', '.join(f'{p.url}/metrics' for p in self.procs)}")

    def start_board(self) -> None:
        s = self.settings
        port = s.board_port if _port_free(s.board_port) else None
        self.board_proc = BoardProcess(s, self.workdir / "board.log", port).start()
        link_token, self.check_token = demo_tokens(s)  # one-time, in the demo's users file
        url = f"{self.board_proc.url}/login#token={link_token}"
        self.links.insert(0, f"alert board: {url}")
        self.console.print(f"[bold]alert board[/] {url}  "
                           "(one-time sign-in link: demo nurse, all units; acknowledge there)")

    def start_listener(self) -> None:
        from vigil.gateways.runner import Hl7Listener

        self.listener = Hl7Listener(self.settings).start()
        self.console.print(f"[bold]MLLP listener[/] 127.0.0.1:{self.listener.port}  "
                           "(the replay sends HL7 v2 ORU^R01, as a monitor gateway)")

    def _replay(self, speed: float) -> None:
        try:
            on_vitals = lambda n: self.produced.__setitem__(0, n)  # noqa: E731
            if self.listener is not None:
                from vigil.gateways.sender import send_stays

                self.stats.append(send_stays(
                    self.settings, self.stays, host="127.0.0.1", port=self.listener.port,
                    speed=speed, labels=True, stop=self.stop_event.is_set, on_vitals=on_vitals))
                return
            timeline = Timeline(self.stays, self.settings.pseudonym_key.get_secret_value(),
                                now_ms=int(time.time() * 1000))
            self.stats.append(replay_timeline(self.settings, timeline, speed=speed,
                                              progress=False, stop=self.stop_event.is_set,
                                              on_vitals=on_vitals))
        except BaseException as exc:  # surfaced in the main thread
            self.errors.append(exc)

    def watch(self, speed: float, until_done: bool, timeout_s: float) -> None:
        """Replay and show the alerts live until every record is processed (``until_done``)
        or Ctrl-C; a failed replay or a dead worker ends it with an error."""
        self.collector = OutputCollector(self.settings)
        view = _Board(self.console, self.collector, self.produced, self.links)
        self.collector.on_alert = view.on_alert
        self.collector.start()
        started = time.perf_counter()
        threading.Thread(target=self._replay, args=(speed,), name="vigil-replay",
                         daemon=True).start()
        done_at: float | None = None
        live = (Live(view, console=self.console, refresh_per_second=4, transient=False)
                if self.console.is_terminal else None)
        if live:
            live.start()
        try:
            while True:
                time.sleep(0.2)
                self._check_health()
                if self.stats and done_at is None:
                    self.produced[0] = self.stats[0].vitals
                    if self.collector.processed >= self.produced[0]:
                        done_at = time.perf_counter()
                        if until_done:
                            break
                        self.console.print("[green]replay finished and every record "
                                           "processed; Ctrl-C stops the demo[/]")
                if until_done and time.perf_counter() - started > timeout_s:
                    raise TimeoutError(f"not all records processed in {timeout_s:.0f} s")
        finally:
            if live:
                live.stop()
        self.elapsed = (done_at or time.perf_counter()) - started

    def _check_health(self) -> None:
        if self.errors:
            raise self.errors[0]
        dead = [p for p in self.procs if p.proc is not None and p.proc.poll() is not None]
        if dead:
            raise RuntimeError(f"a worker exited with {dead[0].proc.returncode}; "
                               f"see {dead[0].log_path}")

    def summary(self) -> dict:
        c = self.collector
        assert c is not None
        c.wait_caught_up()  # the last alerts can trail the last score
        stats = self.stats[0]
        raised = Counter(a.kind for a in c.alerts.values() if a.state == "raised")
        episodes = len({a.alert_id for a in c.alerts.values()})
        on_board = (_board_count(self.board_proc, episodes, self.check_token)
                    if self.board_proc else None)
        return {
            "produced": stats.vitals,
            "accepted": len(c.score_ids),
            "rejected": len(c.dlq_record_ids),
            "alerts": {k.name: raised.get(k.name, 0) for k in registered(self.settings)},
            "records_per_s": round(stats.vitals / self.elapsed, 1) if self.elapsed else None,
            "patients": stats.patients,
            "partially_accepted": len(c.dlq_observation_ids),
            "alert_transitions": len(c.alerts),
            "labels": stats.labels,
            "alert_episodes": episodes,
            "via": self.via,
            "board": ({"url": f"{self.board_proc.url}/", "alerts": on_board}
                      if self.board_proc else None),
        }

    def stop(self) -> None:
        self.stop_event.set()
        if self.collector is not None:
            self.collector.stop()
        if self.listener is not None:
            self.listener.stop()
        for p in self.procs:
            p.stop()
        if self.board_proc is not None:
            self.board_proc.stop()
        if self.broker is not None:
            self.broker.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
