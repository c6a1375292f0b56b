"""HTTP routes of the board: the page, its live feed, the ack endpoint and a health probe.

    GET  /            the board page (static files shipped in the package: no CDN, the ward
                      network may be offline)
    GET  /events      Server-Sent Events, one full snapshot per change
    GET  /api/alerts  the same snapshot as JSON (``?unit=MICU`` for one unit)
    POST /api/ack     {"alert_id": ..., "by": "RN 4"} -> an AckEvent on the acks topic
    GET  /health      200 once the board reads Kafka, 503 before (container health check)
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from vigil.board.live import sse_stream
from vigil.board.service import AckRefused, Board
from vigil.board.view import snapshot

__all__ = ["build_app", "STATIC"]

STATIC = Path(__file__).with_name("static")
BOARD = web.AppKey("board", Board)


def build_app(board: Board) -> web.Application:
    """The aiohttp application; starting it starts the board, cleaning it up stops it."""
    app = web.Application(client_max_size=16 * 1024)  # an ack is a few hundred bytes
    app[BOARD] = board

    async def lifecycle(app: web.Application):
        await board.start()
        yield
        await board.stop()

    async def on_shutdown(app: web.Application) -> None:
        board.changes.close()  # end the open event streams so shutdown does not wait on them

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", _index)
    app.router.add_get("/events", _events)
    app.router.add_get("/api/alerts", _alerts)
    app.router.add_post("/api/ack", _ack)
    app.router.add_get("/health", _health)
    app.router.add_static("/static", STATIC)
    return app


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _events(request: web.Request) -> web.StreamResponse:
    board = request.app[BOARD]
    return await sse_stream(request, board.changes, lambda: _snapshot(board))


async def _alerts(request: web.Request) -> web.Response:
    unit = request.query.get("unit") or None
    return web.json_response(_snapshot(request.app[BOARD], unit))


def _snapshot(board: Board, unit: str | None = None) -> dict:
    # whether the board reads Kafka at all: an empty board must not look like a quiet ward
    return {**snapshot(board.state, unit), "feed": {"ready": board.feed.ready,
                                                    "error": board.feed.error}}


async def _ack(request: web.Request) -> web.Response:
    # JSON only: a cross-site form cannot post it without a CORS preflight, which this
    # service never grants
    if request.content_type != "application/json":
        return web.json_response({"error": "send JSON"}, status=415)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response({"error": "malformed JSON"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "expected {alert_id, by}"}, status=400)
    try:
        result = await request.app[BOARD].acknowledge(body.get("alert_id"), body.get("by"))
    except AckRefused as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    return web.json_response(result)


async def _health(request: web.Request) -> web.Response:
    h = request.app[BOARD].health()
    return web.json_response(h, status=200 if h["ready"] else 503)
