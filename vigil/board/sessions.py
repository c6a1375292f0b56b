"""Server-side sessions: a random id in a cookie, everything else in this process's memory.

The cookie carries only an unguessable id (256 bits); the identity, the CSRF token and the
times stay on the server, keyed by the id's SHA-256, so a session is revoked by forgetting
it (sign out, expiry, an account removed) and nothing in the browser can be edited into more
rights. Sessions end after ``idle_s`` without a request (an open board page counts: its
event stream checks in every few seconds) and ``max_s`` after sign-in whatever happens;
sessions opened with a wall-screen token get ``screen_max_s`` instead. A restarted board
has no sessions: everyone signs in again (a wall screen needs a new token).

>>> clock = [0.0]
>>> store = SessionStore(idle_s=60, max_s=600, screen_max_s=3600, clock=lambda: clock[0])
>>> s = store.create(Identity("rn.alice", "nurse", frozenset({"MICU"}), "password"))
>>> store.get(s.sid) is s
True
>>> clock[0] = 61; store.get(s.sid) is None     # idle for more than a minute
True
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from vigil.board.roles import Identity

__all__ = ["COOKIE", "Session", "SessionStore", "SessionsFull"]

COOKIE = "vigil_session"


class SessionsFull(RuntimeError):
    """The store holds ``capacity`` live sessions: refuse a new sign-in rather than grow."""


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


@dataclass
class Session:
    sid: str  # the cookie value; only its hash is the store's key
    identity: Identity
    token_id: str | None  # the wall-screen token it was opened with, if any
    csrf: str
    created: float
    last_seen: float
    max_s: float


class SessionStore:
    """In-memory sessions with idle and absolute expiry, bounded in number."""

    def __init__(self, *, idle_s: float, max_s: float, screen_max_s: float,
                 capacity: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self.screen_max_s = screen_max_s
        self.capacity = capacity
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, identity: Identity, token_id: str | None = None) -> Session:
        if len(self._sessions) >= self.capacity:
            self.sweep()
            if len(self._sessions) >= self.capacity:
                raise SessionsFull("too many open sessions")
        now = self.clock()
        sid = secrets.token_urlsafe(32)
        max_s = self.screen_max_s if identity.method == "token" else self.max_s
        session = Session(sid, identity, token_id, secrets.token_urlsafe(32), now, now, max_s)
        self._sessions[_key(sid)] = session
        return session

    def _live(self, s: Session, now: float) -> bool:
        return now - s.last_seen <= self.idle_s and now - s.created <= s.max_s

    def get(self, sid: str | None, *, touch: bool = True) -> Session | None:
        """The live session of cookie value ``sid`` (an expired one is dropped)."""
        if not sid or len(sid) > 100:
            return None
        key = _key(sid)
        s = self._sessions.get(key)
        if s is None:
            return None
        now = self.clock()
        if not self._live(s, now):
            del self._sessions[key]
            return None
        if touch:
            s.last_seen = now
        return s

    def drop(self, sid: str | None) -> bool:
        return bool(sid) and self._sessions.pop(_key(sid), None) is not None

    def expires_in(self, s: Session) -> float:
        """Seconds until ``s`` ends if nothing else happens (for the cookie's Max-Age)."""
        now = self.clock()
        return max(0.0, min(s.last_seen + self.idle_s, s.created + s.max_s) - now)

    def sweep(self) -> int:
        """Forget expired sessions; how many."""
        now = self.clock()
        old = [k for k, s in self._sessions.items() if not self._live(s, now)]
        for k in old:
            del self._sessions[k]
        return len(old)
