"""docker-compose.yml: valid for docker-compose, and wired with Vigil's own names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from vigil.settings import VigilSettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian package) is installed by scripts/install.sh"
    out = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "VIGIL_PSEUDONYM_KEY": "test-key",
                              "GF_ADMIN_PASSWORD": "test-password"})
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


LONG_RUNNING = ("kafka", "worker", "board", "prometheus", "alertmanager", "grafana")


def test_compose_has_the_production_services(compose) -> None:
    assert {"kafka", "topics", "worker", "replay", *LONG_RUNNING} <= set(compose["services"])
    kafka = compose["services"]["kafka"]["environment"]
    assert "broker" in kafka["KAFKA_PROCESS_ROLES"] and "controller" in kafka["KAFKA_PROCESS_ROLES"]
    assert all("healthcheck" in compose["services"][s] for s in LONG_RUNNING)
    for name, service in compose["services"].items():  # wired by service name, and healthy
        for dep, how in service.get("depends_on", {}).items():
            assert dep in compose["services"], (name, dep)
            if "healthcheck" in compose["services"][dep]:
                assert how["condition"] == "service_healthy", (name, dep)


def test_compose_environment_names_are_vigil_settings(compose) -> None:
    fields = set(VigilSettings.model_fields)
    for name in ("worker", "replay", "board"):
        env = compose["services"][name]["environment"]
        for key in env:
            assert key.startswith("VIGIL_"), key
            assert key.removeprefix("VIGIL_").lower() in fields, f"{name}: {key} is not a setting"
        # the values parse into a valid settings object
        s = VigilSettings(**{k.removeprefix("VIGIL_").lower(): v for k, v in env.items()})
        assert s.bootstrap_servers == "kafka:9092"


def test_compose_creates_exactly_the_topics_vigil_uses(compose) -> None:
    env = compose["services"]["worker"]["environment"]
    s = VigilSettings(**{k.removeprefix("VIGIL_").lower(): v for k, v in env.items()})
    script = " ".join(compose["services"]["topics"]["command"])
    created = set(re.search(r"for t in ([^;]+);", script).group(1).split())
    assert created == set(s.all_topics)
    partitions = int(re.search(r"--partitions (\d+)", script).group(1))
    assert partitions == s.partitions, "co-partitioned topics must match VIGIL_PARTITIONS"


def test_dockerfile_installs_the_pinned_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "constraints.txt" in text and "ENTRYPOINT [\"vigil\"]" in text
    for folder in ("vigil", "stream", "models", "alerts"):
        assert f"COPY {folder} {folder}" in text


def _mounts(service: dict) -> dict[str, Path]:
    """Bind mounts of a service: container path -> host path (docker-compose config form)."""
    out = {}
    for v in service.get("volumes", []):
        source, target = v.split(":")[:2]
        if source.startswith("/"):
            out[target] = Path(source)
    return out


def _host_path(service: dict, container_path: str) -> Path:
    for target, source in sorted(_mounts(service).items(), key=lambda m: -len(m[0])):
        if container_path == target or container_path.startswith(target + "/"):
            return source / container_path[len(target):].lstrip("/")
    raise AssertionError(f"{container_path} is not mounted from the repository")


def test_board_listens_where_its_health_check_looks(compose) -> None:
    board = compose["services"]["board"]
    env = board["environment"]
    s = VigilSettings(**{k.removeprefix("VIGIL_").lower(): v for k, v in env.items()})
    assert board["command"] == ["board"] and s.board_host == "0.0.0.0"
    assert f"127.0.0.1:{s.board_port}/health" in " ".join(board["healthcheck"]["test"])


def test_prometheus_scrapes_the_workers_and_loads_existing_rules(compose) -> None:
    prom = compose["services"]["prometheus"]
    config_arg = next(a for a in prom["command"] if a.startswith("--config.file="))
    config_path = _host_path(prom, config_arg.split("=", 1)[1])
    assert config_path.is_file(), config_path
    config = yaml.safe_load(config_path.read_text())
    rule_files = [f for pattern in config["rule_files"]
                  for f in config_path.parent.glob(pattern)]
    assert len(rule_files) == len(config["rule_files"]) >= 2, config["rule_files"]
    worker = compose["services"]["worker"]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "vigil")
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == int(worker["environment"]["VIGIL_WEB_PORT"])
    (am,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = am.split(":")
    assert host in compose["services"]
    am_service = compose["services"][host]
    assert any(str(p["target"]) == port for p in am_service["ports"])
    am_arg = next(a for a in am_service["command"] if a.startswith("--config.file="))
    assert _host_path(am_service, am_arg.split("=", 1)[1]).is_file()


def test_grafana_provisioning_points_at_existing_files(compose) -> None:
    grafana = compose["services"]["grafana"]
    provisioning = _host_path(grafana, "/etc/grafana/provisioning")
    (ds_file,) = (provisioning / "datasources").glob("*.yml")
    (datasource,) = yaml.safe_load(ds_file.read_text())["datasources"]
    host = re.match(r"https?://([^:/]+)", datasource["url"]).group(1)
    assert host == "prometheus" and host in compose["services"]
    (db_file,) = (provisioning / "dashboards").glob("*.yml")
    (provider,) = yaml.safe_load(db_file.read_text())["providers"]
    dashboards = _host_path(grafana, provider["options"]["path"])
    assert (dashboards / "vigil.json").is_file(), dashboards
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path(grafana, home).is_file()


def test_every_secret_comes_from_the_environment() -> None:
    """No secret is written in the compose file: each one is a ``${VAR}`` from the
    environment of `docker-compose up` (or a ``*_FILE`` path to a Docker secret)."""
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    envs = [raw["x-vigil-env"], *(svc.get("environment", {}) for svc in raw["services"].values())]
    secret_like = re.compile(r"(PASSWORD|SECRET|PSEUDONYM_KEY|TOKEN)$")
    seen = []
    for env in envs:
        for key, value in env.items():
            if key == "<<" or not secret_like.search(key):
                continue
            seen.append(key)
            assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", str(value)), (key, value)
            assert not re.search(r":-[^}]", str(value)), f"{key} has a default secret: {value}"
    assert {"VIGIL_PSEUDONYM_KEY", "VIGIL_KAFKA_SASL_PASSWORD",
            "GF_SECURITY_ADMIN_PASSWORD"} <= set(seen)
