"""The alert board in a real headless Chromium, on the real broker, as a ward screen uses it.

``vigil board`` runs as a subprocess (the command the compose service runs) against the
session's tansu broker. Alerts produced to Kafka must appear on the open page without a
reload, in ward order; the unit filter must work; clicking *Acknowledge* must put a valid
AckEvent, keyed by the patient, on the acks topic, and the page must show the alert
acknowledged once that ack is read back from Kafka.

Chromium and its driver are Debian's (``scripts/debian-packages.txt``, installed by
``scripts/install.sh``): selenium is pointed at them so it never tries to download a browser.
A missing browser fails this test rather than skipping it: CI installs it, so its absence
is a broken install, not an optional feature. ``VIGIL_WRITE_DOCS=1`` also writes the
screenshot used in the README (``docs/board.png``).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from vigil.runtime import BoardProcess
from vigil.settings import VigilSettings
from vigil.stream.records import ACK_DECODER, AckEvent, AlertEvent, Driver, encode
from vigil.stream.topics import ensure_topics

pytestmark = pytest.mark.broker

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_PNG = Path(__file__).resolve().parents[1] / "docs" / "board.png"
TIMEOUT_S = 20.0


def wait_until(check: Callable[[], object], timeout_s: float, why: Callable[[], str]) -> object:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(why())


@pytest.fixture
def chromium() -> Iterator:
    """Headless Debian Chromium through Debian's chromedriver; never a downloaded browser."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: install the Debian packages chromium and "
                    "chromium-driver (scripts/install.sh does, from scripts/debian-packages.txt)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1180", "--force-device-scale-factor=1", "--lang=en-GB",
                "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})  # JavaScript errors
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def ward_alerts(now: datetime) -> list[AlertEvent]:
    """A plausible night on three units: several kinds and severities, each transition as
    the worker publishes it (reasons, summary, trend, transition reason)."""

    def ev(n: int, unit: str, bed: str, kind: str, severity: str, state: str, risk: float,
           threshold: float, summary: str, reasons: list[tuple[str, str, str]],
           trend: list[float], minutes_ago: int, why: str, **kw) -> AlertEvent:
        t = now - timedelta(minutes=minutes_ago)
        return AlertEvent(
            alert_id=f"alert-{n:02d}", event_id=f"alert-{n:02d}:{state}", patient=f"pt-{n:02d}a7c3e91f4b2d",
            kind=kind, severity=severity, state=state, risk=risk, threshold=threshold,
            reasons=[Driver(f, text, direction=d) for f, text, d in reasons], summary=summary,
            scorer="news2" if kind == "deterioration" else "hybrid-qnn", event_time=t,
            published_at=now - timedelta(seconds=30 - n), episode_start=t - timedelta(minutes=40),
            record_id=f"rec-{n}", unit=unit, bed=bed, transition_reason=why, trend=trend, **kw)

    return [
        ev(1, "MICU", "MICU-04", "deterioration", "high", "raised", 0.45, 0.35,
           "NEWS2 9: SpO2 86 ↓, RR 30 ↑, FiO2 0.25 ↑",
           [("SpO2", "SpO2 86 ↓", "down"), ("RR", "RR 30 ↑", "up"), ("FiO2", "FiO2 0.25 ↑", "up")],
           [0.15, 0.2, 0.2, 0.3, 0.35, 0.45], 4, "risk 0.450 ≥ 0.350"),
        ev(2, "SICU", "SICU-11", "sepsis", "high", "escalated", 0.31, 0.12,
           "risk 31% (qSOFA 2/3): Lactate 3.1 ↑, SBP 92 ↓, HR 118 ↑",
           [("Lactate", "Lactate 3.1 ↑", "up"), ("SBP", "SBP 92 ↓", "down"), ("HR", "HR 118 ↑", "up")],
           [0.05, 0.08, 0.13, 0.16, 0.22, 0.31], 12, "unacknowledged for 30 min, now high"),
        ev(3, "MICU", "MICU-09", "sepsis", "medium", "raised", 0.16, 0.12,
           "risk 16% (qSOFA 1/3): Temp 38.9 ↑, WBC 15.2 ↑, RR 24 ↑",
           [("Temp", "Temp 38.9 ↑", "up"), ("WBC", "WBC 15.2 ↑", "up"), ("RR", "RR 24 ↑", "up")],
           [0.06, 0.09, 0.1, 0.14, 0.16], 25, "risk 0.160 ≥ 0.120"),
        ev(4, "CCU", "CCU-02", "deterioration", "medium", "raised", 0.15, 0.15,
           "NEWS2 3: HR 134 ↑",
           [("HR", "HR 134 ↑", "up")], [0.05, 0.1, 0.1, 0.15], 7, "a red parameter"),
        ev(5, "SICU", "SICU-03", "deterioration", "high", "raised", 0.4, 0.35,
           "NEWS2 8: SBP 88 ↓, HR 121 ↑, GCS 13 ↓",
           [("SBP", "SBP 88 ↓", "down"), ("HR", "HR 121 ↑", "up"), ("GCS", "GCS 13 ↓", "down")],
           [0.2, 0.25, 0.3, 0.4], 18, "risk 0.400 ≥ 0.350"),
        ev(6, "CCU", "CCU-07", "sepsis", "medium", "resolved", 0.05, 0.12,
           "risk 5% (qSOFA 0/3), below the clear level for 2 h", [],
           [0.18, 0.15, 0.1, 0.07, 0.05], 2, "below 0.096 for 2 h"),
    ]


def card(driver, alert_id: str) -> dict | None:
    """What one alert card shows, read in one script: the page rebuilds a card whenever
    what it shows changes, so an element handle could go stale between two reads."""
    return driver.execute_script("""
        const li = document.querySelector(`li[data-alert-id="${arguments[0]}"]`);
        if (!li) return null;
        const line = li.querySelector("svg polyline");
        return {status: li.dataset.status, text: li.innerText,
                points: line ? line.getAttribute("points") : "",
                button: !!li.querySelector("button.ack-btn")};""", alert_id)


def click(driver, css: str) -> bool:
    """Click what ``css`` selects, as a nurse would; False if it was being redrawn."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True
    except (NoSuchElementException, StaleElementReferenceException):
        return False


def order(driver, section: str) -> list[str]:
    """The alert ids of a section, top to bottom."""
    return driver.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} > li`)]"
        ".map((li) => li.dataset.alertId)", section)


def read_acks(settings: VigilSettings, alert_id: str, timeout_s: float) -> list[tuple[bytes, AckEvent]]:
    """Every ack of ``alert_id`` on the acks topic, read as the worker reads it."""
    c = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                      enable_auto_commit=False, fetch_max_wait_ms=50)
    tps = [TopicPartition(settings.topic_acks, p)
           for p in sorted(c.partitions_for_topic(settings.topic_acks) or ())]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got: list[tuple[bytes, AckEvent]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not got and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=200).values():
                for r in records:
                    a = ACK_DECODER.decode(r.value)
                    if a.alert_id == alert_id:
                        got.append((r.key, a))
    finally:
        c.close()
    return got


def test_alerts_appear_live_and_acknowledge_reaches_kafka(broker_settings, chromium,
                                                          tmp_path) -> None:
    from selenium.webdriver.common.by import By

    s = broker_settings
    ensure_topics(s)
    producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")

    def publish(*events: AlertEvent) -> None:
        for e in events:  # keyed like the worker's alerts: the patient pseudonym
            producer.send(s.topic_alerts, key=e.patient.encode(), value=encode(e))
        producer.flush()

    alerts = {a.alert_id: a for a in ward_alerts(datetime.now(UTC))}
    driver = chromium
    with BoardProcess(s, tmp_path / "board.log") as board:
        driver.get(board.url + "/")
        wait_until(lambda: "live" in driver.find_element(By.ID, "conn").text, TIMEOUT_S,
                   lambda: "the page never connected to /events")
        assert order(driver, "active") == []

        # 1. an alert produced to Kafka appears on the open page, with its explanation
        first = alerts["alert-01"]
        publish(first)
        shown = wait_until(lambda: card(driver, "alert-01"), TIMEOUT_S,
                           lambda: "the alert never appeared on the page")
        text = shown["text"]
        for want in ("MICU-04", first.patient, "NEWS2 9: SpO2 86 ↓, RR 30 ↑, FiO2 0.25 ↑",
                     "RR 30 ↑", "risk 0.450 ≥ 0.350", "HIGH", "Deterioration", "NOT ACKNOWLEDGED"):
            assert want in text, (want, text)
        assert len(shown["points"].split()) == len(first.trend)  # the sparkline draws the trend

        # 2. the rest of the night arrives: ward order and the unit filter
        publish(*[a for k, a in alerts.items() if k != "alert-01"], first)  # + a redelivery
        wait_until(lambda: len(order(driver, "active")) == 5, TIMEOUT_S,
                   lambda: f"active: {order(driver, 'active')}")
        assert order(driver, "active") == ["alert-01", "alert-02", "alert-05", "alert-04", "alert-03"]
        assert order(driver, "resolved") == ["alert-06"]
        wait_until(lambda: click(driver, '#units button[data-unit="SICU"]'), 5, lambda: "no SICU")
        wait_until(lambda: order(driver, "active") == ["alert-02", "alert-05"], 5,
                   lambda: f"SICU filter shows {order(driver, 'active')}")
        wait_until(lambda: click(driver, '#units button[data-unit=""]'), 5, lambda: "no All")
        wait_until(lambda: len(order(driver, "active")) == 5, 5, lambda: "filter not cleared")

        # 3. Acknowledge: an AckEvent on Kafka, keyed by the patient, and the page shows it
        target = alerts["alert-02"]
        driver.find_element(By.ID, "by").send_keys("RN 4")
        wait_until(lambda: click(driver, 'li[data-alert-id="alert-02"] button.ack-btn'), 5,
                   lambda: "no Acknowledge button")
        acks = read_acks(s, "alert-02", TIMEOUT_S)
        assert len(acks) == 1, acks
        key, ack = acks[0]
        assert key == target.patient.encode()
        assert (ack.patient, ack.kind, ack.by) == (target.patient, "sepsis", "RN 4")
        assert abs((datetime.now(UTC) - ack.acked_at).total_seconds()) < 60
        acked = wait_until(lambda: (c := card(driver, "alert-02"))["status"] == "acknowledged" and c,
                           TIMEOUT_S, lambda: f"not shown acknowledged: {card(driver, 'alert-02')}")
        assert "ACKNOWLEDGED by RN 4" in acked["text"] and not acked["button"]
        # someone is on it: it moves below the alerts still needing a nurse
        assert order(driver, "active") == ["alert-01", "alert-05", "alert-04", "alert-03", "alert-02"]
        assert "malformed" not in driver.find_element(By.ID, "malformed").text
        assert driver.get_log("browser") == []  # no script errors, no failed requests

        driver.save_screenshot(str(tmp_path / "board.png"))
        if os.environ.get("VIGIL_WRITE_DOCS") == "1":
            DOCS_PNG.parent.mkdir(parents=True, exist_ok=True)
            driver.execute_script("document.activeElement.blur()")
            # the whole page in one picture, however tall (Chrome DevTools, no resizing)
            width, height = driver.execute_script(
                "const r = document.documentElement.getBoundingClientRect();"
                "return [Math.ceil(r.width), Math.ceil(document.documentElement.scrollHeight)];")
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
            DOCS_PNG.write_bytes(base64.b64decode(shot["data"]))
    producer.close()
