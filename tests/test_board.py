"""The alert board's rules: its state reducer (pure) and its HTTP API on the real broker.

The reducer decides what a ward screen shows, so each rule has a test: redeliveries are
deduplicated on ``event_id``; alerts needing a nurse come first, then the most severe, then
the newest; the unit filter; resolved alerts move to "recently resolved" and are then
forgotten for good; acknowledgements from the acks topic and from the worker; malformed
records are counted and skipped.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import msgspec
import pytest
from aiohttp import web

from vigil.board import Board, BoardState
from vigil.board.acks import AckRejected, make_ack
from vigil.board.feed import take_record
from vigil.board.view import alert_view, snapshot
from vigil.board.web import build_app
from vigil.broker import free_port
from vigil.settings import VigilSettings
from vigil.stream.topics import ensure_topics
from vigil.wire.records import ACK_DECODER, AckEvent, AlertEvent, Driver, encode

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def alert(n: int = 1, *, state: str = "raised", severity: str = "high", unit: str = "MICU",
          minute: int = 0, kind: str = "sepsis", **kw) -> AlertEvent:
    """Transition ``state`` of alert ``a{n}`` at T0 + ``minute``."""
    t = T0 + timedelta(minutes=minute)
    fields = dict(alert_id=f"a{n}", event_id=f"a{n}:{state}:{minute}", patient=f"pt-{n:04d}",
                  kind=kind, severity=severity, state=state, risk=0.4, threshold=0.2,
                  reasons=[Driver("RR", "RR 28 ↑"), Driver("SBP", "SBP 92 ↓")],
                  summary="qSOFA 2: RR 28 ↑, SBP 92 ↓", scorer="qsofa", event_time=t,
                  published_at=t, episode_start=T0, record_id=f"r{n}", unit=unit, bed=str(n))
    fields.update(kw)
    return AlertEvent(**fields)


def ack(n: int = 1, minute: int = 1, by: str = "RN 4") -> AckEvent:
    return AckEvent(alert_id=f"a{n}", patient=f"pt-{n:04d}", kind="sepsis",
                    acked_at=T0 + timedelta(minutes=minute), by=by)


def ids(alerts) -> list[str]:
    return [a.alert_id for a in alerts]


# --- the reducer ---------------------------------------------------------------------------

def test_redeliveries_are_deduplicated_on_event_id() -> None:
    b = BoardState()
    raised, escalated = alert(1), alert(1, state="escalated", minute=30)
    assert b.apply_alert(raised) and b.apply_alert(escalated)
    version = b.version
    assert not b.apply_alert(raised)  # at-least-once: an old transition comes again
    assert not b.apply_alert(escalated)
    assert b.duplicates == 2 and b.version == version
    assert [(a.alert_id, a.status) for a in b.active()] == [("a1", "escalated")]


def test_needing_a_nurse_first_then_most_severe_then_newest() -> None:
    b = BoardState()
    for ev in (alert(1, severity="medium", minute=50), alert(2, severity="high", minute=10),
               alert(3, severity="low", minute=59), alert(4, severity="high", minute=40),
               alert(5, severity="high", minute=55)):
        b.apply_alert(ev)
    b.apply_ack(ack(5, minute=56))  # acknowledged: someone is on it, it moves down
    assert ids(b.active()) == ["a4", "a2", "a1", "a3", "a5"]


def test_unit_filter() -> None:
    b = BoardState()
    b.apply_alert(alert(1, unit="MICU"))
    b.apply_alert(alert(2, unit="SICU", minute=5))
    b.apply_alert(alert(3, unit="SICU", minute=9, severity="low"))
    b.apply_alert(alert(4, unit=None))
    assert b.units() == ["MICU", "SICU"]
    assert ids(b.active("SICU")) == ["a2", "a3"]
    assert ids(b.active("MICU")) == ["a1"]
    assert len(b.active()) == 4
    assert [a["alert_id"] for a in snapshot(b, "SICU")["active"]] == ["a2", "a3"]


def test_resolved_alerts_move_to_recently_resolved_then_are_forgotten_for_good() -> None:
    b = BoardState(resolved_keep_s=600)
    b.apply_alert(alert(1))
    b.apply_alert(alert(2, minute=1))
    b.apply_alert(alert(1, state="resolved", minute=120))
    assert ids(b.active()) == ["a2"] and ids(b.recently_resolved()) == ["a1"]
    # resolution is final: a late escalation of the same episode does not revive it
    assert not b.apply_alert(alert(1, state="escalated", minute=100))
    assert ids(b.recently_resolved()) == ["a1"]

    assert not b.expire(T0 + timedelta(minutes=125))  # still within the 10 min
    assert b.expire(T0 + timedelta(minutes=131))
    assert b.recently_resolved() == [] and b.get("a1") is None
    assert not b.apply_alert(alert(1))  # a redelivered raise of the forgotten alert
    assert ids(b.active()) == ["a2"]


def test_ack_from_the_acks_topic_even_when_read_before_its_alert() -> None:
    b = BoardState()
    assert not b.apply_ack(ack(1, minute=2))  # the acks topic was read first
    b.apply_alert(alert(1))
    (a,) = b.active()
    assert a.status == "acknowledged" and a.ack.by == "RN 4"


def test_ack_sent_until_read_back_and_a_later_escalation_needs_a_new_ack() -> None:
    b = BoardState()
    b.apply_alert(alert(1))
    assert b.mark_ack_sent("a1", "RN 4", T0 + timedelta(minutes=1))
    assert b.get("a1").awaiting_ack_readback and b.get("a1").status == "raised"
    assert alert_view(b.get("a1"))["ack_sent"] is True
    b.apply_ack(ack(1, minute=1))
    assert b.get("a1").status == "acknowledged" and not b.get("a1").awaiting_ack_readback
    assert not b.mark_ack_sent("a1", "RN 5", T0)  # nothing to send: it is acknowledged
    # the risk rose after the ack: the worker escalates, the ward must look again
    b.apply_alert(alert(1, state="escalated", minute=20))
    assert b.get("a1").status == "escalated"
    b.apply_ack(ack(1, minute=21, by="RN 5"))
    assert b.get("a1").status == "acknowledged" and b.get("a1").ack.by == "RN 5"


def test_an_acknowledged_transition_from_the_worker_keeps_the_explanation() -> None:
    b = BoardState()
    b.apply_alert(alert(1, transition_reason="risk 0.400 ≥ 0.200"))
    # the worker's event says who acknowledged, but carries no drivers
    b.apply_alert(alert(1, state="acknowledged", minute=3, acknowledged_by="RN 7",
                        acknowledged_at=T0 + timedelta(minutes=2), reasons=[],
                        summary="Acknowledged by RN 7", transition_reason="acknowledged by RN 7"))
    view = alert_view(b.get("a1"))
    assert view["status"] == "acknowledged" and view["acknowledged_by"] == "RN 7"
    assert view["summary"] == "qSOFA 2: RR 28 ↑, SBP 92 ↓"
    assert view["reasons"] == ["RR 28 ↑", "SBP 92 ↓"]
    assert view["transition_reason"] == "risk 0.400 ≥ 0.200"
    # an acknowledged event seen first (its raise was never read) still shows
    b.apply_alert(alert(2, state="acknowledged", acknowledged_by="RN 1",
                        acknowledged_at=T0, reasons=[], summary="Acknowledged by RN 1"))
    assert alert_view(b.get("a2"))["status"] == "acknowledged"


def test_malformed_records_are_counted_and_skipped() -> None:
    s, b = VigilSettings(), BoardState()
    good = encode(alert(1))
    bad_alerts = [b"{not json", b"\xff\xfe junk", b'{"alert_id": "a9"}', None,
                  good.replace(b'"severity":"high"', b'"severity":"extreme"')]
    for offset, value in enumerate(bad_alerts):
        assert not take_record(b, s, s.topic_alerts, 0, offset, value)
    assert not take_record(b, s, s.topic_acks, 1, 0, b'{"alert_id": "a1"}')
    assert not take_record(b, s, s.topic_acks, 1, 1, b"[]")
    assert dict(b.malformed) == {s.topic_alerts: 5, s.topic_acks: 2}
    assert b.alerts == {}
    assert take_record(b, s, s.topic_alerts, 0, 9, good)  # and the next good one is taken
    assert snapshot(b)["malformed"] == {s.topic_alerts: 5, s.topic_acks: 2}


def test_older_events_without_the_new_fields_still_show() -> None:
    raw = msgspec.json.decode(encode(alert(1)))
    for f in ("transition_reason", "trend", "acknowledged_by", "acknowledged_at", "unit", "bed"):
        raw.pop(f, None)
    b = BoardState()
    assert take_record(b, VigilSettings(), "vigil.alerts", 0, 0, json.dumps(raw).encode())
    view = alert_view(b.get("a1"))
    assert view["trend"] == [0.4] and view["transition_reason"] is None
    assert view["reasons"] == ["RR 28 ↑", "SBP 92 ↓"] and view["bed"] is None


def test_acks_are_validated_as_the_worker_validates_them() -> None:
    a = alert(1, kind="deterioration")
    got = make_ack(a, "RN 4", T0)
    assert (got.alert_id, got.patient, got.kind, got.by) == ("a1", "pt-0001", "deterioration", "RN 4")
    assert ACK_DECODER.decode(encode(got)) == got
    for by in ("", "   ", None, 4, "x" * 65):
        with pytest.raises(AckRejected):
            make_ack(a, by, T0)
    with pytest.raises(AckRejected):  # a naive time would be dead-lettered by the worker
        make_ack(a, "RN 4", T0.replace(tzinfo=None))
    audited = make_ack(a, "rn.micu", T0, role="nurse", auth_method="password",
                       client_address="2001:db8::17")
    assert ACK_DECODER.decode(encode(audited)) == audited
    # an ack written before the audit fields existed still decodes, without them
    old = ACK_DECODER.decode(b'{"alert_id":"a1","patient":"pt-0001","kind":"sepsis",'
                             b'"acked_at":"2026-11-27T08:00:00Z","by":"RN 4"}')
    assert (old.by, old.role, old.auth_method, old.client_address) == ("RN 4", None, None, None)


# --- the HTTP API on the real broker ---------------------------------------------------------

@pytest.mark.broker
def test_api_refuses_bad_acks_and_survives_malformed_records(broker_settings) -> None:
    """The board's routes against tansu: junk on both topics is skipped, a good alert shows,
    nothing is answered without signing in, a bad ack gets a clear status and writes
    nothing, a good one lands keyed by patient and carries who sent it."""
    from kafka import KafkaConsumer, KafkaProducer

    from vigil.board.auth import hash_password
    from vigil.board.users_file import UsersFile

    s = broker_settings
    ensure_topics(s)
    UsersFile(s.board_users_path).add_account("rn.ccu", "nurse", "CCU",
                                              hash_password("ccu-night-shift"))
    p = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
    p.send(s.topic_alerts, key=b"pt-x", value=b"{not an alert")
    p.send(s.topic_acks, key=b"pt-x", value=b'{"alert_id": 1}')
    good = alert(1, unit="CCU")
    p.send(s.topic_alerts, key=good.patient.encode(), value=encode(good))
    p.flush()
    p.close()

    async def scenario() -> dict:
        port = free_port()
        runner = web.AppRunner(build_app(Board(s)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}"
        origin = {"Origin": url}
        out: dict = {}
        try:
            # unsafe=True: aiohttp keeps no cookies of IP-address hosts otherwise
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.get(f"{url}/api/alerts") as r:
                    out["anonymous"] = r.status
                async with http.post(f"{url}/api/ack", json={"alert_id": "a1"},
                                     headers=origin) as r:
                    out["anonymous_ack"] = r.status
                async with http.post(f"{url}/api/login", headers=origin, json={
                        "name": "rn.ccu", "password": "ccu-night-shift"}) as r:
                    assert r.status == 200, await r.text()
                    post = {**origin, "X-CSRF-Token": (await r.json())["csrf"]}
                for _ in range(200):
                    async with http.get(f"{url}/api/alerts") as r:
                        board = await r.json()
                    if board["active"] and sum(board["malformed"].values()) == 2:
                        break
                    await asyncio.sleep(0.05)
                out["board"] = board
                async with http.get(f"{url}/health") as r:
                    out["health"] = (r.status, await r.json())
                cases = {"not_json": ("x", {"data": "alert_id=a1"}),
                         "no_alert": ({"by": "RN 4"}, {}),
                         "unknown": ({"alert_id": "nope"}, {}),
                         "good": ({"alert_id": "a1", "by": "Dr Evil"}, {})}
                for name, (body, kw) in cases.items():
                    async with http.post(f"{url}/api/ack", headers=post,
                                         **(kw or {"json": body})) as r:
                        out[name] = (r.status, await r.json())
                async with http.get(f"{url}/api/alerts") as r:
                    out["after"] = await r.json()
                async with http.get(f"{url}/") as r:
                    out["page"] = (r.status, await r.text())
        finally:
            await runner.cleanup()
        return out

    out = asyncio.run(scenario())
    assert out["anonymous"] == out["anonymous_ack"] == 401
    assert [a["alert_id"] for a in out["board"]["active"]] == ["a1"]
    assert out["board"]["malformed"] == {s.topic_alerts: 1, s.topic_acks: 1}
    assert out["health"][0] == 200 and out["health"][1]["ready"]
    assert "active" not in out["health"][1] and "alerts" not in out["health"][1]
    assert out["board"]["feed"] == {"ready": True, "error": None}
    assert out["not_json"][0] == 415
    assert out["no_alert"][0] == 404 and out["unknown"][0] == 404
    assert out["good"][0] == 200 and out["good"][1]["status"] == "sent"
    assert out["after"]["active"][0]["ack_sent"] or out["after"]["active"][0]["status"] == "acknowledged"
    assert out["page"][0] == 200 and "Vigil" in out["page"][1]

    c = KafkaConsumer(s.topic_acks, bootstrap_servers=s.bootstrap_servers,
                      auto_offset_reset="earliest", consumer_timeout_ms=5000)
    acks = [(m.key, m.value) for m in c]
    c.close()
    sent = [value for key, value in acks if key == b"pt-0001"]  # keyed by the pseudonym
    assert len(acks) == 2 and len(sent) == 1  # the junk produced above and the one good ack
    got = ACK_DECODER.decode(sent[0])
    # the signed-in identity, never the typed "by": the acks topic is the audit trail
    assert (got.alert_id, got.patient, got.by, got.kind) == ("a1", "pt-0001", "rn.ccu", "sepsis")
    assert (got.role, got.auth_method, got.client_address) == ("nurse", "password", "127.0.0.1")


@pytest.mark.broker
def test_the_board_says_when_it_stops_reading_kafka_and_recovers(tmp_path) -> None:
    """A board that silently stopped reading would look like a quiet ward. Its own broker
    (the session one must not be stopped): stop it, the feed reports it; start it, it reads."""
    from vigil.board.feed import AlertFeed
    from vigil.broker import EmbeddedBroker

    port = free_port()
    s = VigilSettings(embedded_broker_port=port, partitions=2)

    async def until(check, timeout_s: float) -> bool:
        for _ in range(int(timeout_s / 0.1)):
            if check():
                return True
            await asyncio.sleep(0.1)
        return False

    async def scenario(broker: EmbeddedBroker) -> list[tuple[bool, str | None]]:
        changes: list[int] = []
        feed = AlertFeed(s, BoardState(), lambda: changes.append(1), probe_every_s=1.0)
        task = asyncio.create_task(feed.run())
        seen = []
        try:
            assert await until(lambda: feed.ready, 15), feed.error
            seen.append((feed.ready, feed.error))
            n = len(changes)
            await asyncio.to_thread(broker.stop)
            assert await until(lambda: not feed.ready, 15), "the outage went unnoticed"
            seen.append((feed.ready, feed.error))
            assert len(changes) > n  # open pages were told
            await asyncio.to_thread(broker.start)
            await asyncio.to_thread(ensure_topics, s)  # memory storage: topics are gone
            assert await until(lambda: feed.ready, 30), feed.error
            seen.append((feed.ready, feed.error))
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return seen

    broker = EmbeddedBroker(port, log_path=tmp_path / "tansu.log").start()
    try:
        ensure_topics(s)
        seen = asyncio.run(scenario(broker))
    finally:
        broker.stop()
    assert seen[0] == (True, None) and seen[2] == (True, None)
    assert seen[1][0] is False and seen[1][1]
