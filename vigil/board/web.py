"""HTTP routes of the board: the page, sign-in, its live feed, the ack endpoint, probes.

    GET  /             the board page (signed in; otherwise 303 to /login)
    GET  /login        the sign-in page (name and password, or a one-time token link
                       ``/login#token=…``: a fragment, so the token is in no server log)
    POST /api/login    {"name", "password"} or {"token"} -> a session cookie
    POST /api/logout   ends the session
    GET  /api/session  who is signed in, and the CSRF token the page sends with POSTs
    GET  /events       Server-Sent Events, one snapshot of the reader's units per change
    GET  /api/alerts   the same snapshot as JSON (``?unit=MICU`` for one unit)
    POST /api/ack      {"alert_id": ...} -> an AckEvent by the signed-in nurse
    GET  /health       200 once the board reads Kafka, 503 before (container probe; open,
                       and says nothing about patients)
    GET  /metrics      Prometheus metrics of the board (counts only; open like a worker's)

Static files ship in the package (no CDN: the ward network may be offline). Who may call
what is decided by :mod:`vigil.board.guard`; the unit scope is applied here, on the server,
to every snapshot and every ack.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from aiohttp import web

from vigil.board.guard import CALLER, Caller, Guard
from vigil.board.live import sse_stream
from vigil.board.roles import Identity
from vigil.board.service import AckRefused, Board
from vigil.board.view import snapshot
from vigil.settings import VigilSettings

__all__ = ["build_app", "run_board", "STATIC"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
BOARD = web.AppKey("board", Board)
GUARD = web.AppKey("guard", Guard)
STREAM_MAX_S = 600.0  # a stream re-authenticates (reconnects) at least this often
_HEADERS = {
    # the page loads only its own files and talks only to its own origin; no framing
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def build_app(board: Board, guard: Guard | None = None) -> web.Application:
    """The aiohttp application; starting it starts the board, cleaning it up stops it."""
    guard = guard or Guard(board.settings)
    app = web.Application(client_max_size=16 * 1024, middlewares=[guard.middleware])
    app[BOARD] = board
    app[GUARD] = guard
    app[RENDERS] = _Renders(board)

    async def lifecycle(app: web.Application):
        await board.start()
        yield
        await board.stop()

    async def on_shutdown(app: web.Application) -> None:
        board.changes.close()  # end the open event streams so shutdown does not wait on them

    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        for k, v in _HEADERS.items():
            response.headers.setdefault(k, v)
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/", _index)
    app.router.add_get("/login", _login_page)
    app.router.add_post("/api/login", _login)
    app.router.add_post("/api/logout", _logout)
    app.router.add_get("/api/session", _session)
    app.router.add_get("/events", _events)
    app.router.add_get("/api/alerts", _alerts)
    app.router.add_post("/api/ack", _ack)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_static("/static", STATIC)
    return app


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def _login_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "login.html", headers={"Cache-Control": "no-store"})


async def _login(request: web.Request) -> web.Response:
    return await request.app[GUARD].login(request)


async def _logout(request: web.Request) -> web.Response:
    return await request.app[GUARD].logout(request)


async def _session(request: web.Request) -> web.Response:
    return request.app[GUARD].session_info(request)


def _snapshot(board: Board, who: Identity, unit: str | None = None) -> dict:
    # whether the board reads Kafka at all: an empty board must not look like a quiet ward
    return {**snapshot(board.state, unit, sees=who.sees), "kinds": board.kind_labels,
            "feed": {"ready": board.feed.ready, "error": board.feed.error}}


class _Renders:
    """One rendered snapshot per unit scope and change: a hundred wall screens of one unit
    cost one render per change, not a hundred."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.key: tuple[int, int] | None = None
        self.cache: dict[frozenset[str], dict] = {}

    def __call__(self, who: Identity) -> dict:
        key = (self.board.changes.version, self.board.state.version)
        if key != self.key:
            self.key, self.cache = key, {}
        got = self.cache.get(who.units)
        if got is None:
            got = self.cache[who.units] = _snapshot(self.board, who)
        return got


RENDERS = web.AppKey("renders", _Renders)


async def _events(request: web.Request) -> web.StreamResponse:
    board, guard = request.app[BOARD], request.app[GUARD]
    caller: Caller = request[CALLER]
    refused = guard.open_stream(caller)
    if refused is not None:
        return refused
    renders = request.app[RENDERS]
    who = [caller.identity]

    def allowed() -> bool:
        who[0] = guard.still_signed_in(caller)  # signed out or removed: the stream ends
        return who[0] is not None

    try:
        return await sse_stream(request, board.changes, lambda: renders(who[0]),
                                still_allowed=allowed, max_s=STREAM_MAX_S)
    finally:
        guard.close_stream(caller)


async def _alerts(request: web.Request) -> web.Response:
    unit = request.query.get("unit") or None
    caller: Caller = request[CALLER]
    return web.json_response(_snapshot(request.app[BOARD], caller.identity, unit))


async def _ack(request: web.Request) -> web.Response:
    # JSON only, same origin and with the session's CSRF token (checked by the guard)
    if request.content_type != "application/json":
        return web.json_response({"error": "send JSON"}, status=415)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response({"error": "malformed JSON"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "expected {alert_id}"}, status=400)
    caller: Caller = request[CALLER]
    guard = request.app[GUARD]
    try:
        # who acknowledges is the signed-in identity; a "by" in the body is ignored
        result = await request.app[BOARD].acknowledge(body.get("alert_id"), caller.identity,
                                                      caller.client)
    except AckRefused as exc:
        if exc.reason is not None:
            guard.ack_refused(caller, exc.reason)
        return web.json_response({"error": str(exc)}, status=exc.status)
    guard.metrics.acks_sent.inc()
    return web.json_response(result)


async def _health(request: web.Request) -> web.Response:
    h = request.app[BOARD].health()
    return web.json_response(h, status=200 if h["ready"] else 503)


async def _metrics(request: web.Request) -> web.Response:
    guard = request.app[GUARD]
    guard.sessions.sweep()
    guard.metrics.sessions.set(len(guard.sessions))
    return web.Response(body=guard.metrics.render(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def run_board(settings: VigilSettings) -> None:
    """Serve the board on ``settings.board_host:board_port`` until stopped (SIGINT/SIGTERM)."""
    app = build_app(Board(settings))
    log.info("alert board on http://%s:%d/ reading %s; accounts in %s", settings.board_host,
             settings.board_port, settings.bootstrap_servers, settings.board_users_path)
    web.run_app(app, host=settings.board_host, port=settings.board_port, print=None,
                shutdown_timeout=3.0, access_log=None)
