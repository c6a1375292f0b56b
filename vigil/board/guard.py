"""The board's door: who is asking, and whether they may — for every request, on the server.

Every route but ``/health``, ``/metrics``, the sign-in page and its static files needs a
signed-in identity: a session cookie (built-in accounts, wall-screen tokens) or a trusted
reverse proxy's identity headers (:mod:`vigil.board.proxy`). Without one, the API and the
event stream answer 401 and the page sends the browser to the sign-in page.

Every state-changing request (POST) must come from the board's own origin (``Origin``, or
``Referer`` where a browser sends no ``Origin``; compared with ``VIGIL_BOARD_PUBLIC_URLS`` or
the request's own scheme and host) and, once signed in, carry the session's CSRF token in
the ``X-CSRF-Token`` header, which only a page of the board can read (``GET /api/session``
answers same-origin JavaScript only; the board grants no CORS). The session cookie is
HttpOnly and SameSite=Strict, and Secure whenever the browser reaches the board over https:
the request's host is one of the https ``VIGIL_BOARD_PUBLIC_URLS``, or a trusted proxy says
``X-Forwarded-Proto: https`` (or the board itself serves TLS).

Refusals are counted (:mod:`vigil.board.metrics`) and logged with the user and the client
address, never a patient id, alert id or credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from aiohttp import web

from vigil.board.auth import Accounts
from vigil.board.limits import FailureLimiter, StreamLimiter
from vigil.board.metrics import BoardMetrics
from vigil.board.proxy import (
    ProxyConfig,
    ProxyRefused,
    client_address,
    forwarded_proto,
    proxy_identity,
)
from vigil.board.roles import Identity
from vigil.board.sessions import COOKIE, Session, SessionsFull, SessionStore
from vigil.board.users_file import UsersFile, UsersFileError
from vigil.settings import VigilSettings

__all__ = ["CALLER", "CSRF_HEADER", "Caller", "Guard"]

log = logging.getLogger("vigil.board.audit")

CSRF_HEADER = "X-CSRF-Token"
PUBLIC_PATHS = frozenset({"/health", "/metrics", "/login", "/api/login"})
PUBLIC_PREFIXES = ("/static/",)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PROXY_SIGN_OUT = "/oauth2/sign_out"  # oauth2-proxy's own sign-out route
MAX_VERIFYING = 2  # argon2 checks at once: a burst of sign-ins must not starve the board


@dataclass
class Caller:
    """Who sent one request, as far as the board can tell."""

    identity: Identity | None
    session: Session | None
    client: str  # the client's address (through trusted proxies, X-Forwarded-For)
    secure: bool  # the browser reached the board over https
    origins: frozenset[str]  # the origins a state-changing request may come from
    refused: ProxyRefused | None = None

    @property
    def who(self) -> str:
        return self.identity.name if self.identity is not None else "-"

    @property
    def stream_key(self) -> str:
        if self.session is not None:
            return "s:" + hashlib.sha256(self.session.sid.encode()).hexdigest()[:32]
        return "p:" + self.who


CALLER = web.RequestKey("vigil.caller", Caller)


def _json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


class Guard:
    """Sessions, accounts, the proxy rule, the limits and the checks, for one board."""

    def __init__(self, settings: VigilSettings, metrics: BoardMetrics | None = None, *,
                 users: UsersFile | None = None, accounts: Accounts | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        s = settings
        self.metrics = metrics or BoardMetrics()
        self.users = users or UsersFile(s.board_users_path)
        self.accounts = accounts or Accounts(self.users)
        self.sessions = SessionStore(idle_s=s.board_session_idle_s, max_s=s.board_session_max_s,
                                     screen_max_s=s.board_screen_session_max_s, clock=clock)
        self.failures = FailureLimiter(max_failures=s.board_login_max_failures,
                                       window_s=s.board_login_window_s, clock=clock)
        self.streams = StreamLimiter(per_session=s.board_sse_per_session,
                                     per_client=s.board_sse_per_client, total=s.board_sse_total)
        self.proxy = ProxyConfig.build(s.board_trusted_proxies.split(","),
                                       json.loads(s.board_proxy_groups or "{}"))
        self.public_origins = tuple(_origin_of(u) for u in s.board_public_urls.split(",")
                                    if u.strip())
        self._proxy_key = secrets.token_bytes(32)  # per process: CSRF tokens of proxy users
        self._verifying: asyncio.Semaphore | None = None

    # --- who is asking --------------------------------------------------------------------
    def caller(self, request: web.Request) -> Caller:
        peer = _peer(request)
        host = self._host(request, peer)
        secure = (request.secure or forwarded_proto(peer, request.headers, self.proxy) == "https"
                  or f"https://{host}" in self.public_origins)
        client = client_address(peer, request.headers, self.proxy)
        origin = frozenset(self.public_origins or
                           (f"{'https' if secure else 'http'}://{host}",))
        try:
            ident = proxy_identity(peer, request.headers, self.proxy)
        except ProxyRefused as exc:
            return Caller(None, None, client, secure, origin, refused=exc)
        if ident is not None:
            return Caller(ident, None, client, secure, origin)
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            return Caller(None, None, client, secure, origin)
        current = self.current(session)
        if current is None:
            self.sessions.drop(session.sid)
            return Caller(None, None, client, secure, origin)
        return Caller(current, session, client, secure, origin)

    def current(self, session: Session) -> Identity | None:
        """The session's identity as the users file has it now (None: removed/unreadable)."""
        try:
            return self.accounts.current(session.identity, session.token_id)
        except UsersFileError as exc:
            log.error("users file unreadable, signing requests out: %s", exc)
            return None

    def still_signed_in(self, caller: Caller) -> Identity | None:
        """For an open event stream: the identity while its session lives (touching it)."""
        if caller.session is None:
            return caller.identity  # a proxy's: each new request is vouched for anew
        session = self.sessions.get(caller.session.sid)
        return self.current(session) if session is not None else None

    def _host(self, request: web.Request, peer: str | None) -> str:
        """The host the browser asked for (a trusted proxy's X-Forwarded-Host, else Host)."""
        host = request.headers.get("X-Forwarded-Host") if self.proxy.trusts(peer) else None
        return (host.split(",")[0].strip() if host else request.host).lower()

    def csrf_token(self, caller: Caller) -> str | None:
        if caller.session is not None:
            return caller.session.csrf
        if caller.identity is not None:  # a proxy identity has no session: bind it to the name
            return hmac.new(self._proxy_key, f"csrf|{caller.identity.name}".encode(),
                            hashlib.sha256).hexdigest()
        return None

    def same_origin(self, request: web.Request, caller: Caller) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            referer = request.headers.get("Referer")
            if not referer:
                return False
            origin = _origin_of(referer)
        return origin.strip().lower().rstrip("/") in caller.origins

    def csrf_ok(self, request: web.Request, caller: Caller) -> bool:
        want, got = self.csrf_token(caller), request.headers.get(CSRF_HEADER, "")
        return want is not None and hmac.compare_digest(want.encode(), got.encode())

    # --- the middleware ---------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        caller = self.caller(request)
        request[CALLER] = caller
        path = request.path
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        unsafe = request.method in UNSAFE_METHODS
        is_ack = path == "/api/ack"
        if not public and caller.refused is not None:
            self._refused(request, caller, "no_access", is_ack=False,
                          who=caller.refused.name or "-")
            return _json_error(403, "you are signed in, but have no role on the alert board: "
                                    "ask for your group to be given one")
        if not public and caller.identity is None:
            self._refused(request, caller, "no_session", is_ack=is_ack)
            if path == "/" and request.method == "GET":
                raise web.HTTPSeeOther("/login")
            return _json_error(401, "sign in first")
        if unsafe and not self.same_origin(request, caller):
            self._refused(request, caller, "origin", is_ack=is_ack)
            return _json_error(403, "cross-site request refused")
        if unsafe and not public and not self.csrf_ok(request, caller):
            self._refused(request, caller, "csrf", is_ack=is_ack)
            return _json_error(403, "missing or wrong CSRF token: reload the page")
        return await handler(request)

    def _refused(self, request: web.Request, caller: Caller, reason: str, *, is_ack: bool,
                 who: str | None = None) -> None:
        if reason != "no_access":
            self.metrics.requests_refused.labels(reason).inc()
        if is_ack:
            self.metrics.ack_refused.labels(reason).inc()
        level = logging.WARNING if (is_ack or reason != "no_session") else logging.DEBUG
        log.log(level, "refused %s %s (%s): user %s from %s", request.method, request.path,
                reason, who or caller.who, caller.client)

    def ack_refused(self, caller: Caller, reason: str) -> None:
        """An ack the board itself refused (a viewer, another unit's alert)."""
        self.metrics.ack_refused.labels(reason).inc()
        log.warning("refused acknowledgement (%s): user %s (%s) from %s", reason, caller.who,
                    caller.identity.role if caller.identity else "-", caller.client)

    # --- signing in and out -----------------------------------------------------------------
    async def login(self, request: web.Request) -> web.Response:
        """``POST /api/login`` with ``{"name", "password"}`` or ``{"token"}`` (JSON)."""
        caller: Caller = request[CALLER]
        if request.content_type != "application/json":
            return _json_error(415, "send JSON")
        try:
            body = await request.json()
        except ValueError:
            return _json_error(400, "malformed JSON")
        if not isinstance(body, dict):
            return _json_error(400, 'expected {"name", "password"} or {"token"}')
        token = body.get("token")
        name = body.get("name") if isinstance(body.get("name"), str) else ""
        keys = [f"ip:{caller.client}"]
        if token is None:
            keys.append(f"user:{name.strip().lower()[:64]}")
        wait = self.failures.retry_after(*keys)
        if wait > 0:
            self.metrics.logins.labels("rate_limited").inc()
            log.warning("sign-in rate limited from %s", caller.client)
            return _json_error(429, "too many failed sign-ins: wait and try again",
                               **{"Retry-After": str(math.ceil(wait))})
        try:
            if token is not None:
                got = self.accounts.redeem_token(token, datetime.now(UTC))
                identity, token_id = got if got is not None else (None, None)
            else:
                if self._verifying is None:
                    self._verifying = asyncio.Semaphore(MAX_VERIFYING)
                async with self._verifying:
                    identity = await asyncio.to_thread(self.accounts.check_password, name.strip(),
                                                       body.get("password"))
                token_id = None
        except UsersFileError as exc:
            self.metrics.logins.labels("error").inc()
            log.error("sign-in impossible, the users file is unreadable: %s", exc)
            return _json_error(503, "sign-in is not available: the board's users file is broken")
        if identity is None:
            self.failures.fail(*keys)
            self.metrics.logins.labels("failure").inc()
            # never log a name that is not an account: it may be a password typed in the
            # wrong field
            who = name.strip() if token is None and self.accounts.known(name.strip()) else (
                "(a token)" if token is not None else "(an unknown name)")
            log.warning("sign-in failed: user %s from %s", who, caller.client)
            message = ("this sign-in link is not valid (used, expired or revoked): ask for a "
                       "new one" if token is not None else "wrong name or password")
            return _json_error(401, message)
        if token is None:
            self.failures.clear(keys[1])
        return self._open_session(request, caller, identity, token_id)

    def _open_session(self, request: web.Request, caller: Caller, identity: Identity,
                      token_id: str | None) -> web.Response:
        old = request.cookies.get(COOKIE)
        if old:
            self.sessions.drop(old)  # a new id at every sign-in: no session fixation
        try:
            session = self.sessions.create(identity, token_id)
        except SessionsFull:
            self.metrics.logins.labels("error").inc()
            log.error("sign-in refused: the session table is full")
            return _json_error(503, "too many sessions open: try again later")
        self.metrics.logins.labels("success").inc()
        log.info("signed in: user %s (%s, %s, units %s) from %s", identity.name, identity.role,
                 identity.method, ",".join(sorted(identity.units)), caller.client)
        resp = web.json_response({"identity": identity.describe(), "csrf": session.csrf})
        resp.set_cookie(COOKIE, session.sid, path="/", httponly=True, samesite="Strict",
                        secure=caller.secure, max_age=int(session.max_s))
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        """``POST /api/logout``: the session is forgotten on the server, the cookie cleared."""
        caller: Caller = request[CALLER]
        if caller.session is not None:
            self.sessions.drop(caller.session.sid)
        log.info("signed out: user %s from %s", caller.who, caller.client)
        proxied = caller.identity is not None and caller.identity.method == "proxy"
        resp = web.json_response({"signed_out": True,
                                  "next": PROXY_SIGN_OUT if proxied else "/login"})
        resp.del_cookie(COOKIE, path="/")
        return resp

    def session_info(self, request: web.Request) -> web.Response:
        """``GET /api/session``: who is signed in and the CSRF token for the page."""
        caller: Caller = request[CALLER]
        assert caller.identity is not None  # the middleware let it through
        return web.json_response({"identity": caller.identity.describe(),
                                  "csrf": self.csrf_token(caller),
                                  "idle_s": self.sessions.idle_s},
                                 headers={"Cache-Control": "no-store"})

    # --- event streams ------------------------------------------------------------------------
    def open_stream(self, caller: Caller) -> web.Response | None:
        """Take a stream slot for ``caller``; the refusal (429/503) if a cap is reached."""
        refusal = self.streams.acquire(caller.stream_key, caller.client)
        if refusal is None:
            self.metrics.streams.set(self.streams.open)
            return None
        self.metrics.streams_refused.labels(refusal).inc()
        log.warning("event stream refused (%s cap): user %s from %s", refusal, caller.who,
                    caller.client)
        if refusal == "total":
            return _json_error(503, "the board has too many open screens", **{"Retry-After": "30"})
        return _json_error(429, "too many open board pages for this sign-in or address",
                           **{"Retry-After": "10"})

    def close_stream(self, caller: Caller) -> None:
        self.streams.release(caller.stream_key, caller.client)
        self.metrics.streams.set(self.streams.open)


def _peer(request: web.Request) -> str | None:
    """The TCP peer's address: never a header."""
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peername, (tuple, list)) and peername:
        return str(peername[0])
    return None


def _origin_of(url: str) -> str:
    u = urlsplit(url.strip())
    return f"{u.scheme}://{u.netloc}".lower() if u.scheme and u.netloc else "null"
