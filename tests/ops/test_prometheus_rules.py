"""Prometheus rules, Alertmanager and Grafana files: valid, unit-tested, and consistent.

``promtool test rules`` runs the synthetic-series tests of every alert rule; this test also
checks that no alert rule is left out of them and that each has a firing and a not-firing
case, so a new rule without tests fails CI.
"""

from __future__ import annotations

import json
import subprocess

import yaml

from .conftest import DEPLOY, RULE_FILES, require

TESTS = DEPLOY / "prometheus" / "tests" / "vigil-alerts.test.yml"


def _rules(kind: str) -> list[dict]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [r for r in group["rules"] if kind in r]
    return out


def test_promtool_checks_the_rules_and_the_config() -> None:
    promtool = require("promtool")
    out = subprocess.run([promtool, "check", "rules", *map(str, RULE_FILES)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass() -> None:
    promtool = require("promtool")
    out = subprocess.run([promtool, "test", "rules", str(TESTS)], capture_output=True,
                         text=True, timeout=120, cwd=TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_every_alert_rule_is_tested_firing_and_not_firing() -> None:
    alerts = {r["alert"] for r in _rules("alert")}
    assert len(alerts) >= 10
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts - firing == set(), "alert rules never tested firing"
    assert alerts - quiet == set(), "alert rules never tested not firing"
    assert (firing | quiet) <= alerts, "tests name alerts that do not exist"


def test_alert_rules_are_labelled_and_described() -> None:
    for rule in _rules("alert"):
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["alert"].startswith("Vigil"), rule["alert"]


def test_recording_rules_follow_the_naming_convention() -> None:
    for rule in _rules("record"):
        level, metric, ops = rule["record"].split(":")  # level:metric:operations
        assert level == "vigil" and metric and ops, rule["record"]


def test_alertmanager_config_is_valid() -> None:
    amtool = require("amtool")
    out = subprocess.run([amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_committed_dashboard_is_what_the_generator_emits(dashboard_tool) -> None:
    committed = dashboard_tool.OUT.read_text()
    assert committed == dashboard_tool.render(), (
        "deploy/grafana/dashboards/vigil.json is stale: run "
        ".venv/bin/python deploy/grafana/vigil_dashboard.py")
    board = json.loads(committed)
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    for p in panels:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == dashboard_tool.DATASOURCE_UID, p["title"]
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert {d["uid"] for d in datasources["datasources"]} == {dashboard_tool.DATASOURCE_UID}


def test_rules_and_dashboard_follow_the_kinds_registry(dashboard_tool) -> None:
    """A new alert kind needs no rule edit: rules group by ``kind`` and never name one; the
    rule tests and the dashboard's risk panels use exactly the registered kinds."""
    import re

    from vigil.kinds import registered

    names = {k.name for k in registered()}
    for rule in _rules("expr"):
        assert not re.search(r'kind\s*=~?\s*"', rule["expr"]), (rule, "names a kind")
    tested = set(re.findall(r'kind="([a-z_]+)"', TESTS.read_text()))
    assert tested <= names and tested, tested
    titles = {p["title"] for p in json.loads(dashboard_tool.OUT.read_text())["panels"]}
    assert {f"{k.label} risk distribution" for k in registered()} <= titles
