"""Waiting for a condition with a deadline: the tests' only way to wait (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout_s: float, what: Callable[[], str] | str,
               *, interval_s: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    At the deadline, fail with ``what`` (a message, or a function that builds one then, to
    show the state that was waited on). ``check`` runs at least once, and every
    ``interval_s`` until the deadline.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(what if isinstance(what, str) else what())
        time.sleep(interval_s)
