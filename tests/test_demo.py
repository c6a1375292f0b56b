"""`vigil demo --until-done` from the command line, as a newcomer runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vigil.broker import free_port
from vigil.sample import sample_path

pytestmark = pytest.mark.broker


def test_demo_until_done_accounts_for_every_record(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(VIGIL_EMBEDDED_BROKER_PORT=str(free_port()), VIGIL_WEB_PORT=str(free_port()),
               VIGIL_BOARD_PORT=str(free_port()))
    out = subprocess.run(
        [sys.executable, "-m", "vigil", "demo", "--data", str(sample_path("physionet2019")),
         "--patients", "8", "--speed", "0", "--until-done"],
        capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])  # the last line is the JSON
    assert set(summary) >= {"produced", "accepted", "rejected", "alerts", "records_per_s"}
    assert summary["patients"] == 8
    assert summary["produced"] > 100
    assert summary["accepted"] + summary["rejected"] == summary["produced"]
    assert set(summary["alerts"]) == {"sepsis", "deterioration"}
    assert summary["alerts"]["sepsis"] + summary["alerts"]["deterioration"] > 0
    assert "NEWS2" in out.stdout or "qSOFA" in out.stdout  # alerts were shown as they came
    assert summary["records_per_s"] > 0
    # the alert board ran beside it and shows every alert episode the stream published
    assert summary["board"]["url"] in out.stdout
    assert summary["board"]["alerts"] == summary["alert_episodes"] > 0


def test_every_command_has_help() -> None:
    for cmd in ([], ["broker"], ["worker"], ["replay"], ["demo"], ["settings"]):
        r = subprocess.run([sys.executable, "-m", "vigil", *cmd, "--help"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and "Usage" in r.stdout, (cmd, r.stderr)


def test_settings_command_masks_the_pseudonym_key() -> None:
    env = {**os.environ, "VIGIL_PSEUDONYM_KEY": "very-secret", "VIGIL_PARTITIONS": "7"}
    r = subprocess.run([sys.executable, "-m", "vigil", "settings"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0
    shown = json.loads(r.stdout)
    assert shown["partitions"] == 7 and "very-secret" not in r.stdout
