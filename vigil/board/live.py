"""Live updates: Server-Sent Events that push the whole board to every open page.

The board is small (tens of alerts), so each change sends the full snapshot rather than
deltas: a page that missed an event (reconnect, sleep) is right again on the next one, and
there is no client-side merge logic to get wrong. A ``ping`` event every few seconds lets
the page tell "no new alerts" from "connection lost" (EventSource hides comment lines from the
page, so the heartbeat is a real event): a frozen board must look frozen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

__all__ = ["Changes", "sse_stream"]


class Changes:
    """A version counter with a wake-up for everyone waiting on the next change."""

    def __init__(self) -> None:
        self.version = 0
        self.closed = False  # the service is shutting down: open streams end
        self._event = asyncio.Event()

    def close(self) -> None:
        self.closed = True
        self.notify()

    def notify(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seen: int, timeout_s: float) -> int:
        """Return the current version once it differs from ``seen`` or ``timeout_s`` passed."""
        if self.version == seen:
            try:
                await asyncio.wait_for(self._event.wait(), timeout_s)
            except TimeoutError:
                pass
        return self.version


async def sse_stream(request: web.Request, changes: Changes,
                     render: Callable[[], dict[str, Any]], *, heartbeat_s: float = 5.0,
                     still_allowed: Callable[[], bool] = lambda: True,
                     max_s: float | None = None) -> web.StreamResponse:
    """Send ``render()`` as an ``event: board`` now and after every change, a ``ping``
    event as heartbeat in between. Ends when the page goes away or the service stops.

    ``still_allowed`` is asked before every event: once the reader's session has ended
    (signed out, expired, account removed) the stream sends ``event: signed-out`` and
    ends, so a page does not keep showing alerts to someone no longer signed in. After
    ``max_s`` the stream ends anyway and the page reconnects, which authenticates anew."""
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",  # a reverse proxy must not hold events back
    })
    await resp.prepare(request)
    await resp.write(b"retry: 2000\n\n")
    seen = -1
    deadline = None if max_s is None else asyncio.get_running_loop().time() + max_s
    try:
        while not changes.closed:
            if not still_allowed():
                await resp.write(b"event: signed-out\ndata: {}\n\n")
                break
            if deadline is not None and asyncio.get_running_loop().time() > deadline:
                break
            version = changes.version
            if version != seen:
                data = json.dumps(render(), separators=(",", ":"))
                await resp.write(f"event: board\ndata: {data}\n\n".encode())
                seen = version
            else:
                await resp.write(b"event: ping\ndata: {}\n\n")
            await changes.wait(seen, heartbeat_s)
    except ConnectionResetError:  # the page went away
        pass
    return resp
