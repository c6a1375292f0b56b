"""The board's door over HTTP: 401 without a session, sign-in and its cookie, rate limits,
CSRF and Origin, roles and unit scope on the API, the event stream and acks, the proxy
rule, stream caps, and what the metrics and /health say. The real app on a local port;
Kafka is replaced by a list (see conftest)."""

from __future__ import annotations

import asyncio

from .conftest import PASSWORD


def active(view: dict) -> list[str]:
    return [a["alert_id"] for a in view["active"]]


async def first_event(resp, name: str = "board") -> dict | None:
    """The data of the first ``event: name`` of an SSE response (None if it ends first)."""
    import json

    event = None
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == name:
            return json.loads(line[6:])
    return None


def test_without_a_session_the_api_and_stream_answer_401(run_board) -> None:
    async def scenario(h):
        c = await h.client()
        out = {}
        for path in ("/api/alerts", "/events", "/api/session", "/static/../api/alerts"):
            r = await c.get(path, allow_redirects=False)
            out[path] = (r.status, await r.text())
        r = await c.post("/api/ack", json={"alert_id": "a1"}, headers={"Origin": h.origin})
        out["ack"] = r.status
        r = await c.get("/", allow_redirects=False)
        out["/"] = (r.status, r.headers.get("Location"))
        r = await c.get("/login")
        out["login"] = (r.status, await r.text(), r.headers.get("Content-Security-Policy"))
        r = await c.get("/health")
        out["health"] = (r.status, await r.json())
        out["metrics"] = await (await c.get("/metrics")).text()
        return out

    out = scenario_out = run_board(scenario)
    for path in ("/api/alerts", "/events", "/api/session"):
        assert out[path][0] == 401, path
        assert "pt-" not in out[path][1]
    assert out["ack"] == 401
    assert out["/"] == (303, "/login")
    assert out["login"][0] == 200 and "Sign in" in out["login"][1]
    assert "frame-ancestors 'none'" in out["login"][2]
    # the probe stays open and says nothing about patients or alert counts
    assert out["health"] == (200, {"ready": True, "error": None, "ack_producer": True})
    assert 'vigil_board_ack_refused_total{reason="no_session"} 1.0' in scenario_out["metrics"]


def test_sign_in_sets_a_strict_httponly_cookie_and_sign_out_ends_the_session(run_board) -> None:
    async def scenario(h):
        c = await h.client()
        r = await c.post("/api/login", json={"name": "rn.micu", "password": PASSWORD},
                         headers={"Origin": h.origin})
        cookie = r.headers["Set-Cookie"]
        body = await r.json()
        me = await (await c.get("/api/session")).json()
        r = await c.post("/api/logout", json={}, headers={"Origin": h.origin,
                                                          "X-CSRF-Token": body["csrf"]})
        after = (await c.get("/api/alerts")).status
        return cookie, body, me, r.status, after

    cookie, body, me, logout, after = run_board(scenario)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on 127.0.0.1: a Secure cookie would be dropped
    assert body["identity"] == {"name": "rn.micu", "role": "nurse", "units": ["MICU"],
                                "method": "password"}
    assert me["identity"]["name"] == "rn.micu" and me["csrf"] == body["csrf"]
    assert logout == 200 and after == 401


def test_the_cookie_is_secure_behind_a_tls_proxy_or_at_an_https_public_url(run_board) -> None:
    async def via_proxy(h):  # 127.0.0.1 is a trusted proxy in these settings
        c = await h.client()
        r = await c.post("/api/login", json={"name": "rn.micu", "password": PASSWORD},
                         headers={"Origin": "https://vigil.example.org",
                                  "X-Forwarded-Proto": "https",
                                  "X-Forwarded-Host": "vigil.example.org"})
        return r.status, r.headers.get("Set-Cookie", "")

    status, cookie = run_board(via_proxy)
    assert status == 200 and "Secure" in cookie

    async def public_urls(h):
        c = await h.client()
        login = {"name": "rn.micu", "password": PASSWORD}
        wrong = await c.post("/api/login", json=login,
                             headers={"Origin": h.origin})  # not a public origin
        r = await c.post("/api/login", json=login, headers={
            "Origin": "https://vigil.example.org", "Host": "vigil.example.org"})
        screens = await c.post("/api/login", json=login, headers={
            "Origin": "http://screens.icu.example:8088", "Host": "screens.icu.example:8088"})
        return (wrong.status, r.status, r.headers.get("Set-Cookie", ""), screens.status,
                screens.headers.get("Set-Cookie", ""))

    wrong, status, cookie, screens, screens_cookie = run_board(
        public_urls, board_trusted_proxies="",
        board_public_urls="https://vigil.example.org/, http://screens.icu.example:8088")
    assert wrong == 403 and status == 200 and "Secure" in cookie
    assert screens == 200 and "Secure" not in screens_cookie  # its http address: no Secure


def test_unknown_users_and_wrong_passwords_look_the_same_and_are_rate_limited(run_board) -> None:
    async def scenario(h):
        c = await h.client()
        answers = []
        for name in ("rn.micu", "nobody", "rn.micu", "nobody", "rn.micu"):
            r = await c.post("/api/login", json={"name": name, "password": "wrong password"},
                             headers={"Origin": h.origin})
            answers.append((r.status, await r.json()))
        r = await c.post("/api/login", json={"name": "rn.sicu", "password": PASSWORD},
                         headers={"Origin": h.origin})  # the address is blocked now
        limited = (r.status, r.headers.get("Retry-After"))
        metrics = await (await c.get("/metrics")).text()
        return answers, limited, metrics

    answers, limited, metrics = run_board(scenario)
    assert {(s, a["error"]) for s, a in answers} == {(401, "wrong name or password")}
    assert limited[0] == 429 and 0 < int(limited[1]) <= 300
    assert 'vigil_board_logins_total{outcome="failure"} 5.0' in metrics
    assert 'vigil_board_logins_total{outcome="rate_limited"} 1.0' in metrics
    assert "rn.micu" not in metrics and "nobody" not in metrics


def test_failures_on_one_name_block_that_name_from_every_address(run_board) -> None:
    async def scenario(h):
        c = await h.client()
        for i in range(5):  # five addresses behind the trusted proxy, one name
            await c.post("/api/login", json={"name": "rn.micu", "password": "wrong one!"},
                         headers={"Origin": h.origin, "X-Forwarded-For": f"198.51.100.{i}"})
        r = await c.post("/api/login", json={"name": "rn.micu", "password": PASSWORD},
                         headers={"Origin": h.origin, "X-Forwarded-For": "198.51.100.99"})
        other = await c.post("/api/login", json={"name": "rn.sicu", "password": PASSWORD},
                             headers={"Origin": h.origin, "X-Forwarded-For": "198.51.100.99"})
        return r.status, other.status

    assert run_board(scenario) == (429, 200)


def test_state_changing_requests_need_the_origin_and_the_csrf_token(run_board) -> None:
    async def scenario(h):
        c, csrf = await h.signed_in("rn.micu")
        out = {}
        for name, headers in {
            "no_token": {"Origin": h.origin},
            "wrong_token": {"Origin": h.origin, "X-CSRF-Token": "x" * 43},
            "cross_site": {"Origin": "http://evil.example", "X-CSRF-Token": csrf},
            "no_origin": {"X-CSRF-Token": csrf},
            "null_origin": {"Origin": "null", "X-CSRF-Token": csrf},
            "referer_ok": {"Referer": h.origin + "/#unit=MICU", "X-CSRF-Token": csrf},
        }.items():
            r = await c.post("/api/ack", json={"alert_id": "a1"}, headers=headers,
                             skip_auto_headers=["Origin"])
            out[name] = r.status
        # a cross-site form cannot send JSON either
        r = await c.post("/api/ack", data="alert_id=a1",
                         headers={"Origin": h.origin, "X-CSRF-Token": csrf,
                                  "Content-Type": "application/x-www-form-urlencoded"})
        out["form"] = r.status
        out["metrics"] = await (await c.get("/metrics")).text()
        out["sent"] = len(h.sender.sent)
        return out

    out = run_board(scenario)
    assert out["no_token"] == out["wrong_token"] == 403
    assert out["cross_site"] == out["no_origin"] == out["null_origin"] == 403
    assert out["referer_ok"] == 200 and out["form"] == 415 and out["sent"] == 1
    assert 'vigil_board_ack_refused_total{reason="csrf"} 2.0' in out["metrics"]
    assert 'vigil_board_ack_refused_total{reason="origin"} 3.0' in out["metrics"]


def test_a_nurse_sees_and_acknowledges_only_her_units_and_the_ack_is_audited(run_board) -> None:
    async def scenario(h):
        c, csrf = await h.signed_in("rn.micu")
        post = {"Origin": h.origin, "X-CSRF-Token": csrf}
        view = await (await c.get("/api/alerts")).json()
        other = await (await c.get("/api/alerts?unit=SICU")).json()
        sicu = await c.post("/api/ack", json={"alert_id": "a2"}, headers=post)
        none = await c.post("/api/ack", json={"alert_id": "a3"}, headers=post)  # no unit
        mine = await c.post("/api/ack", json={"alert_id": "a1", "by": "Dr Evil"}, headers=post)
        async with c.get("/events") as r:
            streamed = await first_event(r)
        return (view, other, sicu.status, await sicu.json(), none.status, mine.status,
                list(h.sender.sent), streamed, await (await c.get("/metrics")).text())

    view, other, sicu, sicu_body, none, mine, sent, streamed, metrics = run_board(scenario)
    assert active(view) == ["a1", "a4"] and view["units"] == ["MICU"]
    assert active(other) == []
    assert sicu == none == 404 and sicu_body == {"error": "no such alert on the board"}
    assert mine == 200
    (ack,) = sent
    assert (ack.alert_id, ack.by, ack.role, ack.auth_method, ack.client_address) == (
        "a1", "rn.micu", "nurse", "password", "127.0.0.1")  # the typed "by" is ignored
    assert set(active(streamed)) == {"a1", "a4"}
    assert all(a["unit"] == "MICU" for a in streamed["active"] + streamed["resolved"])
    assert 'vigil_board_ack_refused_total{reason="out_of_scope"} 2.0' in metrics
    assert "vigil_board_acks_sent_total 1.0" in metrics


def test_a_viewer_reads_its_units_but_cannot_acknowledge(run_board) -> None:
    async def scenario(h):
        c, csrf = await h.signed_in("viewer.micu")
        view = await (await c.get("/api/alerts")).json()
        r = await c.post("/api/ack", json={"alert_id": "a1"},
                         headers={"Origin": h.origin, "X-CSRF-Token": csrf})
        return view, r.status, await r.json(), len(h.sender.sent), await (
            await c.get("/metrics")).text()

    view, status, body, sent, metrics = run_board(scenario)
    assert active(view) == ["a1", "a4"]
    assert status == 403 and "viewer" in body["error"] and sent == 0
    assert 'vigil_board_ack_refused_total{reason="viewer"} 1.0' in metrics


def test_a_one_time_token_signs_a_wall_screen_in_once(run_board, users) -> None:
    from datetime import UTC, datetime, timedelta

    token = users.add_token("micu-wall", "viewer", "MICU", datetime.now(UTC) + timedelta(hours=1))

    async def scenario(h):
        c = await h.client()
        first = await c.post("/api/login", json={"token": token}, headers={"Origin": h.origin})
        view = await (await c.get("/api/alerts")).json()
        again = await (await h.client()).post("/api/login", json={"token": token},
                                               headers={"Origin": h.origin})
        users.remove("micu-wall")  # revoked: its session ends at the next request
        revoked = (await c.get("/api/alerts")).status
        return first.status, view, again.status, revoked

    first, view, again, revoked = run_board(scenario)
    assert first == 200 and active(view) == ["a1", "a4"]
    assert again == 401 and revoked == 401


def test_proxy_headers_count_only_from_a_trusted_proxy(run_board) -> None:
    headers = {"X-Forwarded-Email": "alice@hospital.org", "X-Forwarded-Groups": "micu-nurses"}

    async def scenario(h):
        c = await h.client()
        r = await c.get("/api/alerts", headers=headers)
        view = await r.json() if r.status == 200 else None
        me = await (await c.get("/api/session", headers=headers)).json() if view else None
        ack = None
        if me:
            ack = await c.post("/api/ack", json={"alert_id": "a4"},
                               headers={**headers, "Origin": h.origin, "X-CSRF-Token": me["csrf"]})
        nogroup = await c.get("/api/alerts", headers={**headers, "X-Forwarded-Groups": "staff"})
        return r.status, view, ack.status if ack else None, list(h.sender.sent), nogroup.status

    # 127.0.0.1 trusted: alice is a MICU nurse through the proxy
    status, view, ack, sent, nogroup = run_board(scenario)
    assert status == 200 and active(view) == ["a1", "a4"] and ack == 200
    assert (sent[0].by, sent[0].auth_method) == ("alice@hospital.org", "proxy")
    assert nogroup == 403
    # only 10.0.0.0/8 trusted: the same headers from 127.0.0.1 are ignored
    status, view, ack, sent, nogroup = run_board(scenario, board_trusted_proxies="10.0.0.0/8")
    assert status == 401 and view is None and sent == [] and nogroup == 401


def test_event_streams_are_capped_and_end_when_the_session_ends(run_board) -> None:
    async def scenario(h):
        c, csrf = await h.signed_in("rn.micu")
        opened = [await c.get("/events") for _ in range(2)]
        for r in opened:
            assert await first_event(r) is not None
        third = await c.get("/events")  # per session cap: 2
        other, _ = await h.signed_in("charge")
        r = await other.get("/events")  # per client cap: 3
        fourth = r.status
        await c.post("/api/logout", json={}, headers={"Origin": h.origin, "X-CSRF-Token": csrf})
        h.board.changes.notify()  # wake the streams: they check the session and end
        ended = await asyncio.wait_for(first_event(opened[0], "signed-out"), 10)
        for x in opened:
            x.close()
        r.close()
        return third.status, third.headers.get("Retry-After"), fourth, ended

    third, retry, fourth, ended = run_board(scenario, board_sse_per_session=2,
                                            board_sse_per_client=3)
    assert third == 429 and retry and fourth == 200 and ended == {}

    async def total(h):
        c, _ = await h.signed_in("rn.micu")
        ok = await c.get("/events")
        refused = await c.get("/events")
        ok.close()
        return refused.status

    assert run_board(total, board_sse_total=1) == 503
