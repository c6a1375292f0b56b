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
                         env={**os.environ, "VIGIL_PSEUDONYM_KEY": "test-key"})
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_compose_has_the_production_services(compose) -> None:
    assert {"kafka", "topics", "worker", "replay"} <= set(compose["services"])
    kafka = compose["services"]["kafka"]["environment"]
    assert "broker" in kafka["KAFKA_PROCESS_ROLES"] and "controller" in kafka["KAFKA_PROCESS_ROLES"]
    assert all("healthcheck" in compose["services"][s] for s in ("kafka", "worker"))


def test_compose_environment_names_are_vigil_settings(compose) -> None:
    fields = set(VigilSettings.model_fields)
    for name in ("worker", "replay"):
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
