"""Bounds on what one client can make the board do: sign-in attempts and open event streams.

:class:`FailureLimiter` counts failed sign-ins per key (the client address, the user name)
in a sliding window; once a key has ``max_failures`` in ``window_s`` further attempts are
refused with the seconds until the oldest failure leaves the window, before any password is
checked (an attacker does not get to spend the board's CPU on argon2 either). A success
clears that user name's failures, not the address's. The table is bounded: the least
recently failed keys are forgotten first.

:class:`StreamLimiter` caps open Server-Sent-Event streams per session, per client address
and in total; each stream holds a connection and a render of the board per change.

>>> clock = [0.0]
>>> lim = FailureLimiter(max_failures=2, window_s=300, clock=lambda: clock[0])
>>> lim.retry_after("ip:10.0.0.9"), lim.fail("ip:10.0.0.9"), lim.fail("ip:10.0.0.9")
(0.0, None, None)
>>> lim.retry_after("ip:10.0.0.9")
300.0
>>> clock[0] = 301.0; lim.retry_after("ip:10.0.0.9")
0.0
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Literal

__all__ = ["FailureLimiter", "StreamLimiter", "StreamRefusal"]

StreamRefusal = Literal["per_session", "per_client", "total"]


class FailureLimiter:
    def __init__(self, *, max_failures: int, window_s: float, max_keys: int = 50_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        q = self._fails.get(key)
        if q is None:
            return None
        while q and now - q[0] >= self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
            return None
        return q

    def retry_after(self, *keys: str) -> float:
        """0 if every key may try now, else the seconds until all of them may."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            q = self._recent(key, now)
            if q is not None and len(q) >= self.max_failures:
                wait = max(wait, self.window_s - (now - q[-self.max_failures]))
        return wait

    def fail(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            q = self._recent(key, now) or deque(maxlen=self.max_failures)
            q.append(now)
            self._fails[key] = q
            self._fails.move_to_end(key)
        while len(self._fails) > self.max_keys:
            self._fails.popitem(last=False)

    def clear(self, key: str) -> None:
        self._fails.pop(key, None)


class StreamLimiter:
    """Counts open streams; :meth:`acquire` says which cap refuses a new one, if any."""

    def __init__(self, *, per_session: int, per_client: int, total: int) -> None:
        self.per_session = per_session
        self.per_client = per_client
        self.total = total
        self.by_session: Counter[str] = Counter()
        self.by_client: Counter[str] = Counter()
        self.open = 0

    def acquire(self, session_key: str, client: str) -> StreamRefusal | None:
        if self.by_session[session_key] >= self.per_session:
            return "per_session"
        if self.by_client[client] >= self.per_client:
            return "per_client"
        if self.open >= self.total:
            return "total"
        self.by_session[session_key] += 1
        self.by_client[client] += 1
        self.open += 1
        return None

    def release(self, session_key: str, client: str) -> None:
        for counter, key in ((self.by_session, session_key), (self.by_client, client)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        self.open -= 1
