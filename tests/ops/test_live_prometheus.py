"""Every dashboard query and every rule, run by a real Prometheus against a real worker.

A real ``vigil worker`` (the shipped hybrid model) processes a paced replay of the shipped
sample plus bad records on the embedded broker; the Debian ``prometheus`` binary scrapes it
every second with Vigil's rule files loaded; the Debian Alertmanager routes alerts to a
webhook in this test. Then:

* every expression of the Grafana dashboard JSON is evaluated through the HTTP API and must
  return data (Grafana's ``$__rate_interval`` replaced by a window valid at this scrape
  interval);
* every recording rule's expression and its recorded series must return data;
* every alert rule's expression must be valid, and each of its operands (the expression
  split at its top-level comparisons and ``and``/``or``/``unless``) must return data: a
  healthy system legitimately fires nothing, but a renamed metric empties an operand;
* every metric name the rules and the dashboard reference must exist, and Prometheus must
  report every rule's evaluation healthy;
* a unit whose feed went silent 20 minutes ago (its last record carries that Kafka
  timestamp) fires ``VigilUnitFeedSilent``, which must reach the webhook via Alertmanager.

With ``VIGIL_WRITE_DOCS=1`` the dashboard's panels are drawn from this Prometheus's data into
``docs/operations/dashboard.png`` (the README's picture).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer

from vigil.broker import die_with_parent, free_port
from vigil.runtime import OutputCollector, WorkerProcess, stop_process
from vigil.sample import sample_path
from vigil.stream.replay.replayer import replay_timeline
from vigil.stream.replay.sources import load_stays
from vigil.stream.replay.timeline import Timeline
from vigil.stream.topics import ensure_topics

from ..test_e2e import bad_events
from ..waiting import wait_until
from .conftest import ROOT, RULE_FILES, load_tool, require

pytestmark = pytest.mark.broker

SCRAPE_S = 1
RATE_INTERVAL = "10s"  # Grafana's $__rate_interval at a 1 s scrape: >= 4 scrapes
SILENT_UNIT = "TEST-SILENT"
REPLAY_WALL_S = 15.0


# --- PromQL: split an expression into the operands that must return data ---------------
_SET_OPS = ("and", "or", "unless")
_CMP_OPS = ("==", "!=", ">=", "<=", ">", "<")
_MODIFIER = re.compile(r"^\s*(?:bool\s+)?(?:(?:on|ignoring)\s*\([^)]*\)\s*)?"
                       r"(?:(?:group_left|group_right)\s*(?:\([^)]*\))?\s*)?")


def _top_level_split(expr: str, ops: tuple[str, ...]) -> list[str]:
    """Split at operators outside (), [], {} and quotes; words must stand alone."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            quote = "" if c == quote and expr[i - 1] != "\\" else quote
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            for op in ops:
                word = op.isalpha()
                if expr.startswith(op, i) and (not word or (
                        (i == 0 or not expr[i - 1].isalnum() and expr[i - 1] != "_")
                        and (i + len(op) == len(expr) or not (expr[i + len(op)].isalnum()
                                                              or expr[i + len(op)] == "_")))):
                    parts.append(expr[start:i])
                    i += len(op)
                    start = i
                    break
            else:
                i += 1
                continue
            continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts]


def _strip_parens(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for i, c in enumerate(expr):
            depth += c == "("
            depth -= c == ")"
            if depth == 0 and i < len(expr) - 1:
                return expr  # "(a) + (b)": the parentheses do not wrap it all
        expr = expr[1:-1].strip()
    return expr


def operands(expr: str) -> list[str]:
    """The leaf operands of ``expr``'s top-level set operations and comparisons.

    >>> operands('sum(a{x=">"}) > 1 and on (job) (time() - b > 900)')
    ['sum(a{x=">"})', 'time() - b']
    """
    expr = _strip_parens(_MODIFIER.sub("", expr, count=1))
    for ops in (_SET_OPS, _CMP_OPS):
        parts = _top_level_split(expr, ops)
        if len(parts) > 1:
            return [leaf for p in parts for leaf in operands(p)]
    return [] if re.fullmatch(r"[0-9.e+-]+", expr) else [expr]


_NAME = re.compile(r"(?<![\w:\"'.$])([a-zA-Z_:][\w:]*)\s*(?=\{|\[|\)|$|\s*[-+*/><=!]|\s+(?:and|or|unless)\b)")
_NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "time", "vector", "le", "offset"}


def metric_names(expr: str) -> set[str]:
    """Metric names (and recorded series) an expression selects, for an existence check."""
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers hold no metric names
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # nor label lists
    names = set()
    for m in _NAME.finditer(expr):
        name = m.group(1)
        if name not in _NOT_METRICS and expr[m.end():].lstrip()[:1] != "(":
            names.add(name)
    return names


# --- real processes -------------------------------------------------------------------
class Proc:
    """A Debian-packaged server in a subprocess, stopped (and waited for) by the test."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent)

    def wait_http(self, url: str, timeout_s: float = 30.0) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(ready, timeout_s, lambda: f"{url} not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.proc, 15.0)


class Webhook:
    """The pager: an HTTP server that records what Alertmanager posts to it."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[dict]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/page"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self) -> list[dict]:
        return [a for body in list(self.received) for a in body.get("alerts", [])]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PromAPI:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> dict:
        q = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400 with a PromQL error in the body
            return json.loads(e.read())

    def query(self, expr: str) -> dict:
        return self.get("/api/v1/query", query=expr)

    def series(self, expr: str) -> list[dict]:
        res = self.query(expr)
        assert res["status"] == "success", (expr, res)
        return res["data"]["result"]

    def value(self, expr: str) -> float:
        found = self.series(expr)
        return float(found[0]["value"][1]) if found else float("nan")


@pytest.fixture
def stack(broker_settings, tmp_path) -> Iterator[dict]:
    """Worker, Alertmanager (-> webhook) and Prometheus (-> worker, Alertmanager), cleaned up."""
    prometheus, alertmanager = require("prometheus"), require("prometheus-alertmanager")
    s = broker_settings.model_copy(update={"sepsis_scorer": "model"})
    ensure_topics(s)
    started: list = []
    hook = Webhook()
    try:
        worker = WorkerProcess(s, web_port=s.web_port, log_path=tmp_path / "worker.log").start()
        started.append(worker)
        am_port, prom_port = free_port(), free_port()
        am_cfg = tmp_path / "alertmanager.yml"
        am_cfg.write_text(yaml.safe_dump({
            "route": {"receiver": "test-pager", "group_by": ["alertname", "unit"],
                      "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "test-pager", "webhook_configs": [{"url": hook.url}]}],
        }))
        am = Proc([alertmanager, f"--config.file={am_cfg}", f"--storage.path={tmp_path / 'am'}",
                   f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                  tmp_path / "alertmanager.log")
        started.append(am)
        prom_cfg = tmp_path / "prometheus.yml"
        prom_cfg.write_text(yaml.safe_dump({
            "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
            "rule_files": [str(p) for p in RULE_FILES],
            "alerting": {"alertmanagers": [{"static_configs": [
                {"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "vigil", "static_configs": [
                {"targets": [f"127.0.0.1:{s.web_port}"]}]}],
        }))
        prom = Proc([prometheus, f"--config.file={prom_cfg}",
                     f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log")
        started.append(prom)
        am.wait_http(f"http://127.0.0.1:{am_port}/-/ready")
        prom.wait_http(f"http://127.0.0.1:{prom_port}/-/ready")
        worker.wait_ready(timeout_s=120)
        yield {"settings": s, "worker": worker, "hook": hook,
               "prom": PromAPI(f"http://127.0.0.1:{prom_port}")}
    finally:
        for p in reversed(started):
            p.stop()
        hook.stop()


def _silent_unit_record(s) -> None:  # type: ignore[no-untyped-def]
    """The last record of a unit whose monitor feed stopped 20 minutes ago.

    Its Kafka timestamp (and event time) is 20 minutes old, as a producer's CreateTime
    would be for a record sent then: to Vigil, the unit has been silent since.
    """
    then = datetime.now(UTC) - timedelta(minutes=20)
    value = json.dumps({"patient": "pt-silent-unit", "event_time": then.isoformat(),
                        "unit": SILENT_UNIT, "bed": f"{SILENT_UNIT}-01",
                        "observations": [{"code": "HR", "value": 72},
                                         {"code": "SpO2", "value": 97}]}).encode()
    p = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
    p.send(s.topic_vitals, key=b"pt-silent-unit", value=value,
           timestamp_ms=int(then.timestamp() * 1000))
    p.flush()
    p.close()


def _acknowledge_open_alerts(s, collector: OutputCollector) -> int:  # type: ignore[no-untyped-def]
    """A nurse acknowledges one open alert of each kind, as the alert board would."""
    from vigil.wire.records import AckEvent, encode

    last: dict[str, object] = {}
    for a in sorted(collector.alerts.values(), key=lambda a: (a.event_time, a.state != "raised")):
        last[a.alert_id] = a
    open_by_kind = {}
    for a in last.values():
        if a.state in ("raised", "escalated"):
            open_by_kind.setdefault(a.kind, a)
    p = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
    for a in open_by_kind.values():
        ack = AckEvent(alert_id=a.alert_id, patient=a.patient, kind=a.kind,
                       acked_at=datetime.now(UTC), by="RN test")
        p.send(s.topic_acks, key=a.patient.encode(), value=encode(ack))
    p.flush()
    p.close()
    return len(open_by_kind)


def _unix(rfc3339: str | None) -> float:
    """Seconds since the epoch of a timestamp of Prometheus's API (0 for none yet)."""
    if not rfc3339 or rfc3339.startswith("0001-"):  # Go's zero time: never evaluated
        return 0.0
    return datetime.fromisoformat(rfc3339).timestamp()


def _has_number(result: list[dict]) -> bool:
    """At least one sample that is a number: NaN (a quantile of nothing) is not data."""
    return any(r["value"][1] not in ("NaN", "+Inf", "-Inf") for r in result)


def test_every_dashboard_query_and_rule_returns_data_on_a_live_prometheus(stack) -> None:
    started = time.monotonic()
    s, prom, hook = stack["settings"], stack["prom"], stack["hook"]
    stays = load_stays(sample_path("physionet2019")) + load_stays(sample_path("physionet2012"), 5)
    timeline = Timeline(stays, s.pseudonym_key.get_secret_value(), now_ms=int(time.time() * 1000))
    times = [r.at_ms for r in timeline]
    speed = (max(times) - min(times)) / 1000 / REPLAY_WALL_S  # the stream lasts ~15 s
    collector = OutputCollector(s).start()
    try:
        _silent_unit_record(s)
        stats = replay_timeline(s, timeline, speed=speed, progress=False)
        bad = bad_events(timeline)
        p = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
        for key, value, _ in bad:
            p.send(s.topic_vitals, key=key.encode(), value=value)
        p.flush()
        p.close()
        produced = stats.vitals + len(bad) + 1
        assert collector.wait_for(produced, timeout_s=90), f"{collector.processed}/{produced}"
        acked = _acknowledge_open_alerts(s, collector)
        assert acked, "the replay left no open alert to acknowledge"
    finally:
        collector.stop()

    # Prometheus has scraped the final counts; then it has scraped the worker and run every
    # rule group on them at least twice more (its API says when each last happened)
    wait_until(lambda: (
        prom.value('sum(vigil_vitals_records_total{outcome=~"accepted|rejected"})') >= produced
        and prom.value('sum(vigil_alert_acks_total{outcome="acknowledged"})') >= acked),
        30, "Prometheus did not scrape the worker's final counts", interval_s=0.5)
    final_at = time.time()

    def last_runs() -> list[tuple[str, float]]:
        """(scrape target or rule group, Unix time it last ran)."""
        targets = prom.get("/api/v1/targets")["data"]["activeTargets"]
        groups = prom.get("/api/v1/rules")["data"]["groups"]
        return ([(t["scrapeUrl"], _unix(t.get("lastScrape"))) for t in targets]
                + [(g["name"], _unix(g.get("lastEvaluation"))) for g in groups])

    wait_until(lambda: (runs := last_runs()) and all(at > final_at + SCRAPE_S
                                                     for _, at in runs),
               10 + 4 * SCRAPE_S, lambda: (f"not scraped and evaluated twice since "
                                           f"{final_at:.3f}: {last_runs()}"), interval_s=0.2)

    targets = prom.get("/api/v1/targets")["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    (info,) = prom.series("vigil_worker_info")
    assert info["metric"]["model_artifact"].startswith("sepsis-"), info  # the shipped model
    assert prom.value("sum(vigil_jax_compilations_total)") > 0  # compiled at warm-up

    # 1. the dashboard: every target's expression returns data
    board_tool = load_tool("grafana/vigil_dashboard.py")
    board = board_tool.build()
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    checked, empty = 0, []
    for expr in exprs:
        found = prom.series(expr.replace("$__rate_interval", RATE_INTERVAL))
        checked += 1
        if not _has_number(found):
            empty.append(expr)
    assert not empty, f"dashboard queries without data (or only NaN): {empty}"

    # 2. rules as Prometheus evaluates them: all healthy
    groups = prom.get("/api/v1/rules")["data"]["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    assert {r["health"] for r in loaded} == {"ok"}, [r for r in loaded if r["health"] != "ok"]
    defined = [r for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"]
               for r in g["rules"]]
    assert len(loaded) == len(defined)

    # 3. recording rules: expression and recorded series return data
    for rule in (r for r in defined if "record" in r):
        sel = rule["record"] + "{" + ",".join(f'{k}="{v}"' for k, v in
                                              rule.get("labels", {}).items()) + "}"
        assert _has_number(prom.series(rule["expr"])), rule["expr"]
        assert _has_number(prom.series(sel)), sel
        checked += 2

    # 4. alert rules: valid, and every operand returns data
    leaves = 0
    for rule in (r for r in defined if "alert" in r):
        res = prom.query(rule["expr"])
        assert res["status"] == "success", (rule["alert"], res)
        checked += 1
        parts = operands(rule["expr"])
        assert parts, rule["expr"]
        for part in parts:
            assert _has_number(prom.series(part)), f"{rule['alert']}: no data for {part!r}"
            leaves += 1

    # 5. every metric name referenced anywhere exists in Prometheus
    known = set(prom.get("/api/v1/label/__name__/values")["data"])
    referenced = set()
    for expr in exprs + [r["expr"] for r in defined]:
        referenced |= metric_names(expr)
    assert referenced - known == set(), "referenced but never scraped or recorded"
    assert {"vigil_consumer_lag_records", "vigil_jax_compilations_total",
            "vigil_unit_vitals_records_total", "vigil_scored_rows_bucket"} <= known

    # 6. the silent unit pages: Prometheus fires, Alertmanager routes it to the webhook
    wait_until(lambda: any(a["labels"].get("alertname") == "VigilUnitFeedSilent"
                           and a["labels"].get("unit") == SILENT_UNIT and a["status"] == "firing"
                           for a in hook.alerts()),
               30, lambda: str(("no page for the silent unit",
                                prom.get("/api/v1/alerts")["data"], hook.received)),
               interval_s=0.25)
    page = next(a for a in hook.alerts() if a["labels"].get("unit") == SILENT_UNIT)
    assert page["labels"]["severity"] == "critical"
    assert "No vitals from unit TEST-SILENT" in page["annotations"]["summary"]
    firing = {(a["labels"]["alertname"], a["labels"].get("unit"))
              for a in prom.get("/api/v1/alerts")["data"]["alerts"] if a["state"] == "firing"}
    # the replayed units are live: only the silent one is reported silent
    assert {u for name, u in firing if name == "VigilUnitFeedSilent"} == {SILENT_UNIT}

    # no patient pseudonym in any label Prometheus holds
    for label in ("unit", "instance", "topic", "reason", "kind"):
        values = prom.get(f"/api/v1/label/{label}/values")["data"]
        assert not [v for v in values if v.startswith("pt-")], (label, values)

    wall = time.monotonic() - started
    print(f"\nlive Prometheus: {checked} expressions checked ({len(exprs)} dashboard, "
          f"{sum('record' in r for r in defined)} recording x2, "
          f"{sum('alert' in r for r in defined)} alert rules with {leaves} operands), "
          f"{len(referenced)} metric names present, page received; {wall:.0f} s")

    if os.environ.get("VIGIL_WRITE_DOCS") == "1":
        _write_dashboard_png(prom, board, time.time() - (time.monotonic() - started) - 5)


def _write_dashboard_png(prom: PromAPI, board: dict, start: float) -> None:
    render = load_tool("grafana/render_png.py").render
    end = time.time()

    def query_range(expr: str) -> list:
        res = prom.get("/api/v1/query_range", query=expr.replace("$__rate_interval", RATE_INTERVAL),
                       start=f"{start:.3f}", end=f"{end:.3f}", step="1")
        assert res["status"] == "success", (expr, res)
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]])
                for r in res["data"]["result"]]

    out = ROOT / "docs" / "operations" / "dashboard.png"
    n = render(board, query_range, out, subtitle="(live Prometheus, replay of the shipped sample)")
    print(f"wrote {out} ({n} panels)")
