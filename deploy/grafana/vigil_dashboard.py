"""The Vigil Grafana dashboard, as code (grafana-foundation-sdk).

    python deploy/grafana/vigil_dashboard.py          # writes deploy/grafana/dashboards/vigil.json
    python deploy/grafana/vigil_dashboard.py --check  # exit 1 if the committed JSON is stale

Grafana provisions the JSON (deploy/grafana/provisioning/); the JSON is generated, never
edited by hand. Every query here is run against a live Prometheus scraping a live worker by
tests/ops/test_live_prometheus.py, so a renamed metric fails CI instead of leaving an empty
panel. Queries read the recording rules of deploy/prometheus/rules/ where one exists, and
use ``$__rate_interval`` (Grafana's rate window for the scrape interval) otherwise.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import (
    bargauge,
    dashboard,
    heatmap,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BarGaugeDisplayMode, VizOrientation
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DataSourceRef
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from vigil.kinds import registered  # one risk panel per alert kind

__all__ = ["DATASOURCE_UID", "OUT", "build", "render"]

DATASOURCE_UID = "vigil-prometheus"  # matches provisioning/datasources/prometheus.yml
OUT = Path(__file__).resolve().parent / "dashboards" / "vigil.json"
_DS = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    fmt: PromQueryFormat = PromQueryFormat.TIME_SERIES


@dataclass(frozen=True)
class Spec:
    """One panel: what a reader needs in one glance, and the queries behind it."""

    kind: str  # timeseries | stat | heatmap | bargauge | table
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    width: int = 8
    height: int = 8
    stacked: bool = False
    extra: dict[str, object] = field(default_factory=dict)


def _q(expr: str, legend: str = "", fmt: PromQueryFormat = PromQueryFormat.TIME_SERIES) -> Query:
    return Query(expr, legend, fmt)


ROWS: tuple[tuple[str, tuple[Spec, ...]], ...] = (
    ("Health", (
        Spec("stat", "Workers consuming", "Workers whose vitals agent consumes (vigil_worker_up).",
             (_q("sum(vigil_worker_up)"),), width=4, height=4),
        Spec("stat", "Scrape targets up", "Vigil workers Prometheus can scrape.",
             (_q('sum(up{job="vigil"})'),), width=4, height=4),
        Spec("stat", "Vigil alerts firing", "Prometheus alerts of deploy/prometheus/rules firing now.",
             (_q('count(ALERTS{alertname=~"Vigil.*", alertstate="firing"}) or vector(0)'),),
             width=4, height=4),
        Spec("stat", "JAX compilations (1 h)",
             "XLA compilations in the last hour; after start-up this should stay 0.",
             (_q("sum(increase(vigil_jax_compilations_total[1h]))"),), width=4, height=4),
        Spec("table", "Workers", "Version, model artifact and scorers of each worker.",
             (_q("vigil_worker_info", fmt=PromQueryFormat.TABLE),), width=8, height=4),
    )),
    ("Throughput and lag", (
        Spec("timeseries", "Vitals records / s by outcome",
             "accepted includes partially accepted records; redelivered were applied before a restart.",
             (_q("vigil:vitals_records:rate1m", "{{outcome}}"),
              _q("vigil:scores:rate1m", "scores published")), unit="reqps"),
        Spec("timeseries", "Consumer lag (records)",
             "Per topic: highwater from fetch responses minus the committed offset.",
             (_q("vigil:consumer_lag_records:sum", "{{topic}}"),)),
        Spec("timeseries", "Latency quantiles",
             "Record in Kafka -> score/alert published (Vigil's part), clinical event -> alert "
             "(includes the feed's delay; a replay of old data shows its age), batch processing.",
             (_q("vigil:ingest_to_publish_seconds:quantile5m", "Kafka -> published p{{quantile}}"),
              _q("vigil:event_to_alert_seconds:quantile5m", "event -> alert p{{quantile}}"),
              _q("vigil:batch_processing_seconds:quantile5m", "batch p{{quantile}}")), unit="s"),
        Spec("timeseries", "Scoring",
             "p99 wall time of the scorer calls per micro-batch, and rows scored per batch "
             "(calls are padded to VIGIL_SCORE_BATCH_SIZE).",
             (_q("histogram_quantile(0.99, sum by (le) (rate(vigil_scoring_seconds_bucket[$__rate_interval])))",
                 "scoring p99 (s)"),
              _q("sum(rate(vigil_scored_rows_sum[$__rate_interval])) / "
                 "sum(rate(vigil_scored_rows_count[$__rate_interval]))", "rows per batch")),
             width=12),
        Spec("timeseries", "Worker CPU and memory", "Per worker process.",
             (_q('rate(process_cpu_seconds_total{job="vigil"}[$__rate_interval])', "CPU {{instance}}"),
              _q('process_resident_memory_bytes{job="vigil"} / 2^30', "RSS GiB {{instance}}")),
             width=12),
    )),
    ("Data quality", (
        Spec("timeseries", "Dead letters / s by reason",
             "Refused records and observations (vigil_rejections_total); each is in the DLQ topic "
             "with its original payload.",
             (_q("vigil:rejections:rate5m", "{{reason}}"),), unit="reqps", width=12, stacked=True),
        Spec("timeseries", "Share of records dead-lettered", "Alert VigilDeadLetterRateHigh at 5%.",
             (_q("vigil:dlq_records:ratio_rate5m", "rejected / consumed"),), unit="percentunit",
             width=12),
    )),
    ("Alerts", (
        Spec("timeseries", "Alerts raised (last hour) by kind and severity", "",
             (_q('sum by (kind, severity) (increase(vigil_alerts_total{state="raised"}[1h]))',
                 "{{kind}} {{severity}}"),), width=8, stacked=True),
        Spec("timeseries", "Alert transitions / h by state", "",
             (_q("sum by (state) (vigil:alerts:rate5m) * 3600", "{{state}}"),), width=8),
        Spec("timeseries", "Escalations and suppressions (last hour)",
             "Escalations by cause (severity rose, or unacknowledged); threshold crossings "
             "suppressed by the refractory period.",
             (_q("sum by (kind, cause) (increase(vigil_alert_escalations_total[1h]))",
                 "escalated {{kind}} {{cause}}"),
              _q("sum by (kind, cause) (increase(vigil_alerts_suppressed_total[1h]))",
                 "suppressed {{kind}} {{cause}}")), width=8),
        Spec("timeseries", "Time to acknowledge", "From raise (event time) to acknowledgement.",
             (_q("vigil:alert_time_to_ack_seconds:quantile1h", "{{kind}} p{{quantile}}"),),
             unit="s", width=12),
        Spec("timeseries", "Acknowledgements (last hour) by outcome", "",
             (_q("sum by (outcome) (increase(vigil_alert_acks_total[1h]))", "{{outcome}}"),),
             width=12),
    )),
    ("Model risk (drift watch)", (
        *(Spec("heatmap", f"{kind.label} risk distribution",
               "Scored rows per risk bucket over time.",
               (_q(f'sum by (le) (vigil:risk_bucket:rate5m{{kind="{kind.name}"}})', "{{le}}",
                   PromQueryFormat.HEATMAP),), width=8)
          for kind in registered()),
        Spec("timeseries", "Risk quantiles by kind", "A shift here without a change of case mix "
             "is drift: check the model and the feeds.",
             (_q("histogram_quantile(0.5, sum by (kind, le) (vigil:risk_bucket:rate5m))",
                 "{{kind}} p50"),
              _q("histogram_quantile(0.9, sum by (kind, le) (vigil:risk_bucket:rate5m))",
                 "{{kind}} p90")), width=8),
        Spec("timeseries", "Online model labels / s by outcome", "",
             (_q("sum by (outcome) (rate(vigil_online_labels_total[$__rate_interval]))",
                 "{{outcome}}"),), width=24, height=6),
    )),
    ("Units (charge nurses, bed managers)", (
        Spec("bargauge", "Patients per unit", "Patients with vitals processed in the last 2 h.",
             (_q("vigil:unit_patients:sum", "{{unit}}"),), width=6),
        Spec("bargauge", "Patients at risk per unit", "Patients with an active alert.",
             (_q("vigil:unit_patients_at_risk:sum", "{{unit}} {{kind}}"),), width=6),
        Spec("timeseries", "Vitals records / s per unit", "",
             (_q("sum by (unit) (rate(vigil_unit_vitals_records_total[$__rate_interval]))",
                 "{{unit}}"),), unit="reqps", width=6),
        Spec("bargauge", "Time since last vitals per unit",
             "Alert VigilUnitFeedSilent at 15 min: a silent monitor feed.",
             (_q("time() - vigil:unit_last_vitals_timestamp_seconds:max", "{{unit}}"),),
             unit="s", width=6),
    )),
)


def _target(q: Query, ref: str) -> prometheus.Dataquery:
    t = (prometheus.Dataquery().expr(q.expr).legend_format(q.legend or "__auto").ref_id(ref)
         .datasource(_DS).format(q.fmt))
    return t.instant() if q.fmt == PromQueryFormat.TABLE else t.range()


def _panel(spec: Spec):  # type: ignore[no-untyped-def]
    if spec.kind == "timeseries":
        p = timeseries.Panel().unit(spec.unit).line_width(1).fill_opacity(10)
        if spec.stacked:
            from grafana_foundation_sdk.builders.common import StackingConfig
            from grafana_foundation_sdk.models.common import StackingMode

            p = p.stacking(StackingConfig().mode(StackingMode.NORMAL))
    elif spec.kind == "stat":
        p = stat.Panel().unit(spec.unit)
    elif spec.kind == "heatmap":
        p = heatmap.Panel()
    elif spec.kind == "bargauge":
        p = (bargauge.Panel().unit(spec.unit).display_mode(BarGaugeDisplayMode.GRADIENT)
             .orientation(VizOrientation.HORIZONTAL))
    elif spec.kind == "table":
        p = table.Panel()
    else:  # pragma: no cover - a typo in ROWS
        raise ValueError(spec.kind)
    p = p.title(spec.title).datasource(_DS).span(spec.width).height(spec.height)
    if spec.description:
        p = p.description(spec.description)
    for i, q in enumerate(spec.queries):
        p = p.with_target(_target(q, chr(ord("A") + i)))
    return p


def build() -> dict:
    """The dashboard as the JSON object Grafana provisions."""
    d = (dashboard.Dashboard("Vigil: ICU alerting operations").uid("vigil-operations")
         .tags(["vigil", "icu", "kafka"]).refresh("30s").time("now-6h", "now")
         .timezone("browser").tooltip(DashboardCursorSync.CROSSHAIR)
         .description("Throughput, lag, latency, dead letters, alerts, acknowledgements, "
                      "model risk and unit load of Vigil. Generated by "
                      "deploy/grafana/vigil_dashboard.py: do not edit the JSON."))
    for title, specs in ROWS:
        d = d.with_row(dashboard.Row(title))
        for spec in specs:
            d = d.with_panel(_panel(spec))
    return json.loads(JSONEncoder(sort_keys=True).encode(d.build()))


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
