"""The alert board in a real headless Chromium, on the real broker, as a ward screen uses it.

``vigil board`` runs as a subprocess (the command the compose service runs) against the
session's tansu broker, with accounts in its users file. Signed out, every page is the
sign-in page and the API answers 401. Signed in on all units (a charge nurse), alerts
produced to Kafka appear on the open page without a reload, in ward order, and the unit
filter works. A MICU nurse sees only MICU; clicking *Acknowledge* puts a valid AckEvent,
keyed by the patient and carrying her signed-in identity, role and address, on the acks
topic, and the page shows the alert acknowledged once that ack is read back from Kafka. A
viewer has no Acknowledge button and the board refuses its ack; a POST without the CSRF
token, or from another site, is refused too.

Chromium and its driver are Debian's (``scripts/debian-packages.txt``, installed by
``scripts/install.sh``): selenium is pointed at them so it never tries to download a browser.
A missing browser fails this test rather than skipping it: CI installs it, so its absence
is a broken install, not an optional feature. ``VIGIL_WRITE_DOCS=1`` also writes the
screenshots used in the README (``docs/board.png``, ``docs/board-signin.png``).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from vigil.board.auth import hash_password
from vigil.board.users_file import UsersFile
from vigil.runtime import BoardProcess
from vigil.settings import VigilSettings
from vigil.stream.topics import ensure_topics
from vigil.wire.records import ACK_DECODER, AckEvent, AlertEvent, Driver, encode

from .waiting import wait_until

pytestmark = pytest.mark.broker

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_PNG = Path(__file__).resolve().parents[1] / "docs" / "board.png"
DOCS_SIGNIN_PNG = DOCS_PNG.with_name("board-signin.png")
PASSWORDS = {"charge": "charge-nurse-night", "rn.micu": "micu-bed-four-ok",
             "screen.micu": "micu-wall-screen"}
TIMEOUT_S = 20.0


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


def acks_on_topic(settings: VigilSettings) -> list[AckEvent]:
    """Every ack on the acks topic now: read up to the end offsets, so nothing is missed."""
    c = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                      enable_auto_commit=False, fetch_max_wait_ms=50)
    tps = [TopicPartition(settings.topic_acks, p)
           for p in sorted(c.partitions_for_topic(settings.topic_acks) or ())]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    ends = c.end_offsets(tps)
    got: list[AckEvent] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(c.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "the acks topic could not be read to its end"
            for records in c.poll(timeout_ms=200).values():
                got.extend(ACK_DECODER.decode(r.value) for r in records)
    finally:
        c.close()
    return got


def http_status(url: str, data: bytes | None = None, headers: dict | None = None) -> int:
    """The status of a request made without any session (a script, not the browser)."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def metric(board_url: str, series: str) -> float:
    with urllib.request.urlopen(f"{board_url}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    return 0.0


def sign_in(driver, board_url: str, name: str) -> None:
    """Sign in through the sign-in page, as a nurse would, and wait for the live board."""
    from selenium.webdriver.common.by import By

    driver.get(board_url + "/login")
    wait_until(lambda: driver.find_elements(By.ID, "name"), TIMEOUT_S, lambda: "no sign-in form")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[name])
    driver.find_element(By.ID, "submit").click()
    wait_until(lambda: driver.execute_script("return location.pathname") == "/"
               and driver.find_elements(By.ID, "conn")
               and "live" in driver.find_element(By.ID, "conn").text, TIMEOUT_S,
               lambda: f"not signed in as {name}: {driver.current_url} {driver.page_source[:500]}")
    assert name in driver.find_element(By.ID, "me-name").text


def sign_out(driver) -> None:
    wait_until(lambda: click(driver, "#signout"), 5, lambda: "no Sign out button")
    wait_until(lambda: driver.execute_script("return location.pathname") == "/login",
               TIMEOUT_S, lambda: f"still on {driver.current_url} after signing out")


def page_fetch(driver, path: str, body: dict, csrf: bool) -> dict:
    """A POST made by the page's own JavaScript (same origin, with the session cookie)."""
    return driver.execute_async_script("""
        const [path, body, withToken, done] = arguments;
        const headers = {"Content-Type": "application/json"};
        if (withToken) headers["X-CSRF-Token"] = me.csrf;
        fetch(path, {method: "POST", headers, body: JSON.stringify(body)})
          .then(async (r) => done({status: r.status, body: await r.json()}))
          .catch((e) => done({status: 0, body: String(e)}));""", path, body, csrf)


class _AttackerSite:
    """Another origin (``localhost`` on its own port, while the board is ``127.0.0.1``)
    whose page posts an ack to the board with a form, as a cross-site attack would."""

    def __init__(self, target: str) -> None:
        page = ("<!doctype html><form id=f method=post enctype=text/plain action='"
                f"{target}'><input name='{{\"alert_id\":\"alert-03\",\"x\":\"' "
                "value='\"}'></form><script>document.getElementById('f').submit()</script>")

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def full_page_png(driver, path: Path) -> None:
    """The whole page in one picture, however tall (Chrome DevTools, no resizing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.execute_script("document.activeElement.blur()")
    width, height = driver.execute_script(
        "const r = document.documentElement.getBoundingClientRect();"
        "return [Math.ceil(r.width), Math.ceil(document.documentElement.scrollHeight)];")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def test_signed_in_nurses_see_their_units_and_acknowledge_as_themselves(
        broker_settings, chromium, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    s = broker_settings
    ensure_topics(s)
    users = UsersFile(s.board_users_path)
    for name, role, units in (("charge", "nurse", "*"), ("rn.micu", "nurse", "MICU"),
                              ("screen.micu", "viewer", "MICU")):
        users.add_account(name, role, units, hash_password(PASSWORDS[name]))
    producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")

    def publish(*events: AlertEvent) -> None:
        for e in events:  # keyed like the worker's alerts: the patient pseudonym
            producer.send(s.topic_alerts, key=e.patient.encode(), value=encode(e))
        producer.flush()

    alerts = {a.alert_id: a for a in ward_alerts(datetime.now(UTC))}
    driver = chromium
    with BoardProcess(s, tmp_path / "board.log") as board:
        # 0. signed out: the API answers 401 and every page is the sign-in page
        assert http_status(f"{board.url}/api/alerts") == 401
        assert http_status(f"{board.url}/events") == 401
        assert http_status(f"{board.url}/api/ack", json.dumps({"alert_id": "alert-01"}).encode(),
                           {"Content-Type": "application/json", "Origin": board.url}) == 401
        driver.get(board.url + "/")
        wait_until(lambda: driver.execute_script("return location.pathname") == "/login"
                   and driver.find_elements(By.ID, "signin"), TIMEOUT_S,
                   lambda: f"signed out, / showed {driver.current_url}")
        if os.environ.get("VIGIL_WRITE_DOCS") == "1":
            full_page_png(driver, DOCS_SIGNIN_PNG)
        driver.find_element(By.ID, "name").send_keys("charge")
        driver.find_element(By.ID, "password").send_keys("not the password")
        driver.find_element(By.ID, "submit").click()
        wait_until(lambda: "wrong name or password" in driver.find_element(By.ID, "msg").text,
                   TIMEOUT_S, lambda: "a wrong password was not refused on the page")
        driver.get_log("browser")  # the refused sign-in's 401 is logged; not a script error

        # 1. a charge nurse (all units): an alert produced to Kafka appears live, explained
        sign_in(driver, board.url, "charge")
        assert order(driver, "active") == []
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
        assert driver.get_log("browser") == []  # no script errors, no failed requests
        sign_out(driver)
        driver.get(board.url + "/")  # signed out again: back to the sign-in page
        wait_until(lambda: driver.execute_script("return location.pathname") == "/login",
                   TIMEOUT_S, lambda: "signed out, the board still showed")

        # 3. a MICU nurse sees only MICU, and her ack carries who she is
        sign_in(driver, board.url, "rn.micu")
        wait_until(lambda: order(driver, "active") == ["alert-01", "alert-03"], TIMEOUT_S,
                   lambda: f"MICU nurse sees {order(driver, 'active')}")
        assert order(driver, "resolved") == []  # alert-06 is CCU's
        units = driver.execute_script(
            "return [...document.querySelectorAll('#units button')].map((b) => b.dataset.unit)")
        assert units == ["", "MICU"], units
        assert "SICU" not in driver.page_source and alerts["alert-02"].patient not in driver.page_source
        assert not driver.find_elements(By.ID, "by")  # no typed name any more
        target = alerts["alert-01"]
        wait_until(lambda: click(driver, 'li[data-alert-id="alert-01"] button.ack-btn'), 5,
                   lambda: "no Acknowledge button")
        acks = read_acks(s, "alert-01", TIMEOUT_S)
        assert len(acks) == 1, acks
        key, ack = acks[0]
        assert key == target.patient.encode()
        assert (ack.patient, ack.kind, ack.by) == (target.patient, "deterioration", "rn.micu")
        assert (ack.role, ack.auth_method, ack.client_address) == ("nurse", "password", "127.0.0.1")
        assert abs((datetime.now(UTC) - ack.acked_at).total_seconds()) < 60
        acked = wait_until(lambda: (c := card(driver, "alert-01"))["status"] == "acknowledged" and c,
                           TIMEOUT_S, lambda: f"not shown acknowledged: {card(driver, 'alert-01')}")
        assert "ACKNOWLEDGED by rn.micu" in acked["text"] and not acked["button"]
        assert order(driver, "active") == ["alert-03", "alert-01"]  # someone is on it
        assert driver.get_log("browser") == []

        # 4. a POST without the CSRF token, from the board's own page, is refused; so is
        # another site's form post (the SameSite=Strict cookie does not even go with it)
        refused = page_fetch(driver, "/api/ack", {"alert_id": "alert-03"}, csrf=False)
        assert refused["status"] == 403 and "CSRF" in refused["body"]["error"], refused
        before = metric(board.url, 'vigil_board_ack_refused_total{reason="no_session"}')
        attacker = _AttackerSite(f"{board.url}/api/ack")
        try:
            driver.get(attacker.url)
            wait_until(lambda: "sign in first" in driver.page_source, TIMEOUT_S,
                       lambda: f"the cross-site post was answered: {driver.page_source[:300]}")
        finally:
            attacker.close()
        assert metric(board.url, 'vigil_board_ack_refused_total{reason="no_session"}') == before + 1
        assert metric(board.url, 'vigil_board_ack_refused_total{reason="csrf"}') == 1
        driver.get_log("browser")  # the refused requests above are logged by design

        # 5. a viewer (a ward's wall screen) reads MICU, has no button, and cannot ack
        driver.get(board.url + "/")
        sign_out(driver)
        sign_in(driver, board.url, "screen.micu")
        wait_until(lambda: order(driver, "active") == ["alert-03", "alert-01"], TIMEOUT_S,
                   lambda: f"viewer sees {order(driver, 'active')}")
        assert not card(driver, "alert-03")["button"]
        refused = page_fetch(driver, "/api/ack", {"alert_id": "alert-03"}, csrf=True)
        assert refused["status"] == 403 and "viewer" in refused["body"]["error"], refused
        assert metric(board.url, 'vigil_board_ack_refused_total{reason="viewer"}') == 1
        assert [a.alert_id for a in acks_on_topic(s)] == ["alert-01"]  # nothing else got through
        driver.get_log("browser")
        sign_out(driver)

        # 6. the whole ward again, for the README: five active alerts, one acknowledged
        sign_in(driver, board.url, "charge")
        wait_until(lambda: order(driver, "active")
                   == ["alert-02", "alert-05", "alert-04", "alert-03", "alert-01"],
                   TIMEOUT_S, lambda: f"charge nurse sees {order(driver, 'active')}")
        assert "malformed" not in driver.find_element(By.ID, "malformed").text
        assert driver.get_log("browser") == []
        driver.save_screenshot(str(tmp_path / "board.png"))
        if os.environ.get("VIGIL_WRITE_DOCS") == "1":
            full_page_png(driver, DOCS_PNG)
    producer.close()
