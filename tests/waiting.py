"""Waiting for a condition with a deadline: the tests' only way to wait (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout_s: float, what: Callable[[], str]) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what()`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(what())
